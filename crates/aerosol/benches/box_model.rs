//! Box-model throughput (filled in below).
fn main() {}
