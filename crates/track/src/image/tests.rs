use super::phantom::{Geometry, Insert, PhantomShape};
use super::range::{Calibration, RangeMethod};
use super::*;
use crate::graph::GraphConfig;
use crate::physics::{Material, RangeTable, bethe_mass_stopping_power};
use crate::sim::{SimConfig, Simulator};

fn pencil(thickness: f64, n: usize, shape: PhantomShape, x: f64) -> SimConfig {
    let mut c = SimConfig::bergen(thickness, n);
    c.phantom.shape = shape;
    c.beam.spot_sigma_mm = 0.0;
    c.beam.divergence_mrad = 0.0;
    c.beam.spots = vec![[x, 0.0]];
    c.physics.multiple_scattering = false;
    c.physics.energy_straggling = false;
    c.physics.nuclear.enabled = false;
    c
}

fn truth_of_first(c: &SimConfig) -> crate::sim::PrimaryTruth {
    let sim = Simulator::new(c).unwrap();
    let mut hits = Vec::new();
    sim.simulate_primary(1, 0, 0, &mut hits)
}

/// ∫ RSP dl along a chord of `len` mm of `m` entered at `e0`, RSP = ρ S_m / S_w at each step's
/// mid energy (an independent sum from Bethe–Bloch, not from range tables).
fn wepl_by_rsp(m: &Material, e0: f64, len: f64) -> (f64, f64) {
    let (w, t) = (Material::water(), RangeTable::new(m));
    let (mut e, mut wepl) = (e0, 0.0);
    let steps = 2000;
    let ds = len / steps as f64;
    for _ in 0..steps {
        let e1 = t.energy_after_mm(e, ds);
        let em = 0.5 * (e + e1);
        wepl += ds * m.density_g_cm3 * bethe_mass_stopping_power(m, em) / bethe_mass_stopping_power(&w, em);
        e = e1;
    }
    (wepl, e)
}

#[test]
fn true_wepl_of_a_water_slab_is_its_thickness() {
    let t = truth_of_first(&pencil(150.0, 1, PhantomShape::Slab, 0.0));
    assert!((t.wepl_mm - 150.0).abs() < 1e-6, "{}", t.wepl_mm);
    assert!(t.phantom_entry.is_some() && t.phantom_exit.is_some());
    // With scattering the path is longer by ⟨θ²⟩/2-ish: still within 0.3 %.
    let mut c = SimConfig::bergen(150.0, 1);
    c.physics.nuclear.enabled = false;
    let sim = Simulator::new(&c).unwrap();
    let mean = (0..50)
        .map(|i| {
            let mut h = Vec::new();
            sim.simulate_primary(3, 0, i, &mut h).wepl_mm
        })
        .sum::<f64>()
        / 50.0;
    assert!(mean > 150.0 - 0.3 && mean < 150.0 * 1.003, "{mean}");
}

#[test]
fn true_wepl_through_an_insert_matches_the_rsp_integral() {
    // A straight pencil along z through the centre of a cortical-bone insert at u = 30 mm.
    let (r, ri, u) = (75.0, 10.0, 30.0);
    let shape = PhantomShape::Cylinder {
        radius_mm: r,
        half_height_mm: 100.0,
        inserts: vec![Insert {
            material: "cortical_bone".into(),
            u_mm: u,
            w_mm: 0.0,
            radius_mm: ri,
            half_height_mm: None,
        }],
        rotation_deg: 0.0,
    };
    let mut c = pencil(160.0, 1, shape, u);
    c.physics.max_step_mm = 0.05;
    let t = truth_of_first(&c);
    let chord = 2.0 * (r * r - u * u).sqrt();
    let bone = crate::materials::by_name("cortical_bone").unwrap();
    // Air before, water, bone, water: the air is ≈ 1e-3 per mm; energy at the phantom face from
    // the simulator's own start (1750 mm of air before the phantom, 5 mm in its box).
    let air = crate::materials::by_name("air").unwrap();
    let box_air = 160.0 - chord;
    let (w_air0, e0) = wepl_by_rsp(&air, 230.0, 1750.0);
    let (w_a, e1) = wepl_by_rsp(&air, e0, 0.5 * box_air);
    let (w_1, e2) = wepl_by_rsp(&Material::water(), e1, 0.5 * chord - ri);
    let (w_2, e3) = wepl_by_rsp(&bone, e2, 2.0 * ri);
    let (w_3, e4) = wepl_by_rsp(&Material::water(), e3, 0.5 * chord - ri);
    let (w_b, _) = wepl_by_rsp(&air, e4, 0.5 * box_air);
    let expect = w_a + w_1 + w_2 + w_3 + w_b;
    let _ = w_air0;
    // Steps are placed by their midpoint's material: boundaries cost ≤ one step (0.05 mm) each.
    assert!((t.wepl_mm - expect).abs() < 0.3, "simulated {} vs ∫RSP {expect}", t.wepl_mm);
    // Bone adds ≈ (RSP − 1) · 20 mm ≈ 12 mm over water.
    assert!(t.wepl_mm - chord > 8.0, "{} vs water chord {chord}", t.wepl_mm);
}

#[test]
fn step_phantom_has_two_thicknesses() {
    let shape = PhantomShape::Step { x_mm: 0.0, step_thickness_mm: 60.0 };
    let thick = truth_of_first(&pencil(120.0, 1, shape.clone(), -20.0)).wepl_mm;
    let thin = truth_of_first(&pencil(120.0, 1, shape, 20.0)).wepl_mm;
    assert!((thick - 120.0).abs() < 0.05, "{thick}");
    // 60 mm of water and 60 mm of air (≈ 0.06 mm water-equivalent).
    assert!((thin - 60.0).abs() < 0.2 && thin > 60.0, "{thin}");
}

#[test]
fn rotated_cylinder_moves_its_inserts() {
    let shape = PhantomShape::ctp404();
    let PhantomShape::Cylinder { inserts, .. } = &shape else { unreachable!() };
    let ins = inserts[1].clone();
    let g = |deg: f64| {
        let mut s = shape.clone();
        if let PhantomShape::Cylinder { rotation_deg, .. } = &mut s {
            *rotation_deg = deg;
        }
        Geometry::new(&s, -80.0, 80.0, 0, 99, |n| {
            Ok(crate::materials::names().iter().position(|m| *m == n).unwrap() + 1)
        })
        .unwrap()
    };
    let want = crate::materials::names().iter().position(|m| *m == ins.material).unwrap() + 1;
    for deg in [0.0, 37.0, 90.0, 200.0] {
        // The insert's centre, rotated by θ about the axis (x = 0, z = 0 here).
        let th = f64::to_radians(deg);
        let (x, z) = (th.cos() * ins.u_mm - th.sin() * ins.w_mm, th.sin() * ins.u_mm + th.cos() * ins.w_mm);
        assert_eq!(g(deg).material_at(x, 0.0, z), want, "{deg}°");
        assert_eq!(g(deg).material_at(0.0, 0.0, 0.0), 0, "centre is water");
        assert_eq!(g(deg).material_at(0.0, 0.0, 79.0), 99, "outside the cylinder");
        assert_eq!(g(deg).material_at(0.0, 150.0, 0.0), 99, "above the cylinder");
    }
}

#[test]
fn bad_phantoms_are_refused_with_the_field() {
    let mut c = SimConfig::bergen(100.0, 10);
    c.phantom.shape = PhantomShape::ctp404();
    let e = Simulator::new(&c).unwrap_err().to_string();
    assert!(e.contains("radius_mm") && e.contains("50"), "{e}");
    c.phantom.thickness_mm = 160.0;
    assert!(Simulator::new(&c).is_ok());
    if let PhantomShape::Cylinder { inserts, .. } = &mut c.phantom.shape {
        inserts[0].material = "unobtainium".into();
    }
    let e = Simulator::new(&c).unwrap_err().to_string();
    assert!(e.contains("unobtainium") && e.contains("teflon"), "{e}");
    if let PhantomShape::Cylinder { inserts, .. } = &mut c.phantom.shape {
        inserts[0].material = "air".into();
        inserts[0].u_mm = 0.0;
        inserts[0].w_mm = 74.0;
    }
    let e = Simulator::new(&c).unwrap_err().to_string();
    assert!(e.contains("inserts[0]"), "{e}");
    c.phantom.shape = PhantomShape::Step { x_mm: 0.0, step_thickness_mm: 200.0 };
    let e = Simulator::new(&c).unwrap_err().to_string();
    assert!(e.contains("step_thickness_mm"), "{e}");
    let json = serde_json::to_string(&PhantomShape::ctp404()).unwrap();
    assert_eq!(serde_json::from_str::<PhantomShape>(&json).unwrap(), PhantomShape::ctp404());
}

/// The water-slab calibration puts held-out water slabs at their thickness: the robust mean
/// estimate within 1.5 mm, the spread within the stated resolution (range straggling ≈ 1.1 %
/// of the residual range plus the layer quantisation of ≈ 8.2 mm / √12).
#[test]
fn wepl_of_held_out_water_slabs_matches_their_thickness() {
    let sim = |t: f64| Simulator::new(&SimConfig::bergen(t, 20));
    let (graph, filter) = (GraphConfig::default(), TrackFilter::default());
    let cal = calibrate(sim, &[0.0, 60.0, 120.0, 180.0, 240.0], 10, 7, 0, &graph, &filter).unwrap();
    for t in [90.0, 200.0] {
        let s = sim(t).unwrap();
        let depth = s.detector.layer_wet_mm(230.0);
        let cm = s.detector.config.cluster_model.clone();
        let exit_z = s.detector.front_z() - s.config.phantom.gap_mm;
        let mut est = [Vec::new(), Vec::new()];
        for f in 100..115 {
            let frame = s.simulate_frame(7, f);
            let g = HitGraph::build(&frame, &graph).unwrap();
            let (m, _) = measure_tracks(&g, &frame, &oracle_tracks(&g, &filter).unwrap(), &depth, &cm, exit_z);
            for (k, c) in cal.iter().enumerate() {
                est[k].extend(m.iter().filter_map(|t| t.observable[k]).map(|o| c.wepl(o) - t));
            }
        }
        for (k, c) in cal.iter().enumerate() {
            let s = ErrorStats::of(&est[k]).unwrap();
            eprintln!("{t} mm, {:?}: {s:?}", c.method);
            assert!(s.n > 200, "{s:?}");
            assert!(s.robust_mean.abs() < 1.5, "{t} mm {:?}: {s:?}", c.method);
            assert!(s.sigma_mad < 6.0, "{t} mm {:?}: {s:?}", c.method);
        }
    }
}

#[test]
fn radiograph_bins_and_takes_medians() {
    let mut r = Radiograph::new([-10.0, 10.0], [-5.0, 5.0], 5.0).unwrap();
    assert_eq!((r.nx, r.ny), (4, 2));
    assert!(r.add(-9.0, -4.0, 1.0) && r.add(-9.5, -1.0, 3.0) && r.add(-6.0, -0.5, 100.0));
    assert!(!r.add(11.0, 0.0, 1.0) && !r.add(0.0, 0.0, f64::NAN));
    let m = r.median_map(1);
    assert_eq!(m[0], 3.0);
    assert!(m[1].is_nan());
    assert!(r.median_map(4)[0].is_nan());
    assert_eq!(r.xs(), vec![-7.5, -2.5, 2.5, 7.5]);
    assert!(Radiograph::new([1.0, 0.0], [0.0, 1.0], 1.0).is_err());
    let e = Radiograph::new([0.0, 1e4], [0.0, 1e4], 1.0).unwrap_err().to_string();
    assert!(e.contains("4,000,000"), "{e}");
    let s = ErrorStats::of(&[1.0, -1.0, 3.0, f64::NAN, 20.0]).unwrap();
    assert_eq!(s.n, 4);
    assert_eq!(s.median, 2.0);
    assert!((s.rms - (411.0f64 / 4.0).sqrt()).abs() < 1e-12);
    assert_eq!(s.tail_10mm, 0.25);
    let _ = Calibration::fit(RangeMethod::LastLayer, &[(0.0, vec![2.0]), (1.0, vec![1.0])]).unwrap();
}
