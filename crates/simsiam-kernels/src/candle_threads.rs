//! How candle's element-wise worker threads wait between two ops.
//!
//! candle 0.11 runs its element-wise ops on a pool of its own (`CANDLE_NUM_THREADS - 1`
//! threads besides the caller), whose threads spin for 25,000 rounds after each op before they
//! park. Between two element-wise ops a training step runs our kernels on rayon's threads, and
//! a candle thread still spinning takes a core from them. Measured on the 2-core Xeon
//! (AVX-512), `bench_step`, imagenet-r18 at batch 64, 2 threads, 2026-12-06: 203-205
//! images/s with candle's default, 225 with its threads parked at once; cifar-r18 unchanged.

/// candle's variable for the rounds its worker threads spin before they park.
const SPIN_LIMIT: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// Makes candle's element-wise worker threads park as soon as an op ends instead of spinning,
/// unless the environment already sets `CANDLE_BARRIER_POOL_SPIN_LIMIT` (the user's value
/// stands). Returns whether it set the limit. Call it first thing in a training program's
/// `main`, as [`crate::keep_freed_memory`]; libraries should leave the decision to the
/// program.
///
/// # Safety
/// It sets an environment variable: no other thread may be running yet
/// ([`std::env::set_var`]).
pub unsafe fn park_idle_candle_threads() -> bool {
    if std::env::var_os(SPIN_LIMIT).is_some() {
        return false;
    }
    // SAFETY: the caller guarantees that no other thread runs.
    unsafe { std::env::set_var(SPIN_LIMIT, "0") };
    true
}
