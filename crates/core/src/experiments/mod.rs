pub fn all() -> Vec<crate::experiment::Experiment> { vec![] }
