//! The double-backward switch and its guard (`gradlab_core::grad`). Runs without the test
//! harness so that `main` starts with one thread, as a user's program does.

use gradlab_core::grad::{double_backward_is_exact, double_backward_requested, enable_exact_double_backward};

fn main() {
    if !double_backward_requested() {
        // candle's default: a second backward pass runs but is wrong; the guard sees it, and
        // this thread has now cached the setting, so enabling must fail on it.
        assert!(!double_backward_is_exact().unwrap(), "the probe should detect candle's default");
        let e = enable_exact_double_backward().unwrap_err().to_string();
        assert!(e.contains("CANDLE_GRAD_DO_NOT_DETACH") && e.contains("before"), "{e}");
        assert!(double_backward_requested(), "the variable is set while the process has one thread");
    } else {
        enable_exact_double_backward().unwrap();
    }
    // A thread started afterwards reads the variable at its first backward pass: exact.
    std::thread::spawn(|| assert!(double_backward_is_exact().unwrap())).join().unwrap();
    // With several threads alive and the variable set, enabling only checks.
    std::thread::spawn(|| enable_exact_double_backward().unwrap()).join().unwrap();
    println!("test result: ok. 1 passed; 0 failed; 0 ignored");
}
