//! What the director's benches share: timing a program with
//! `BPF_PROG_TEST_RUN`, and the median.

use std::time::Duration;

use aya::programs::{TestRun as _, TestRunOptions, Xdp};

/// Mean kernel-reported ns of one run of `prog` on `packet` over `runs`
/// runs of repeat 1 (every run starts from the original packet), and the
/// verdict of the last.
pub fn batch_mean(prog: &Xdp, packet: &[u8], out: &mut [u8], runs: usize) -> (f64, u32) {
    let mut total = Duration::ZERO;
    let mut verdict = 0;
    for _ in 0..runs {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(packet);
        opts.data_out = Some(&mut *out);
        let r = prog
            .test_run(opts)
            .expect("BPF_PROG_TEST_RUN (root needed)");
        total += r.duration;
        verdict = r.return_value;
    }
    (total.as_nanos() as f64 / runs as f64, verdict)
}

/// The middle value (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
