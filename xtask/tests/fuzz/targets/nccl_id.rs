//! The NCCL id file that rank 0 publishes and the other ranks read: `launch::read_id`.

use std::path::Path;
use std::time::Duration;

use simsiam::launch::read_id;

use super::{Outcome, Target, refused};

pub const TARGET: Target = Target { name: "nccl_id", seeds, run, tokens: &[] };

fn run(dir: &Path, data: &[u8]) -> Outcome {
    let path = dir.join("nccl-id");
    std::fs::write(&path, data).expect("the id file");
    match read_id(&path, Duration::ZERO) {
        Ok(bytes) => {
            assert_eq!(bytes, data, "the id read back differs from the file");
            Outcome::Accepted
        }
        Err(e) => refused(&e, &path),
    }
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let id: Vec<u8> = (0..128u8).map(|i| i.wrapping_mul(37)).collect();
    vec![
        ("ok-id".into(), id.clone()),
        ("ok-zeros".into(), vec![0; 128]),
        ("err-short".into(), id[..127].to_vec()),
        ("err-long".into(), [id.as_slice(), b"\n"].concat()),
        ("err-empty".into(), Vec::new()),
    ]
}
