//! CIFAR binary batches: `Cifar10::load`, `Cifar100::load` and `load_coarse`, then every
//! sample read back.
//!
//! Input: `[mode, meta_len, meta.., records..]`; `mode` bit 0 picks CIFAR-100, bit 1 writes
//! the `meta_len` bytes as the class-names file, bit 2 loads CIFAR-100's coarse labels.

use std::path::Path;

use simsiam::data::{Cifar10, Cifar100, Dataset, Split};

use super::{Outcome, Target, refused};

pub const TARGET: Target = Target { name: "cifar", seeds, run, tokens: &[b"airplane\n", b"\n"] };

const PIXELS: usize = 3 * 32 * 32;

fn run(dir: &Path, data: &[u8]) -> Outcome {
    let (mode, rest) = data.split_first().map_or((0, &[][..]), |(m, r)| (*m, r));
    let (meta_len, rest) = rest.split_first().map_or((0, &[][..]), |(n, r)| (usize::from(*n), r));
    let (meta, records) = rest.split_at(meta_len.min(rest.len()));
    let hundred = mode & 1 == 1;
    let (folder, batch, meta_file, label_bytes) = if hundred {
        (Cifar100::DIR, "test.bin", "fine_label_names.txt", 2)
    } else {
        (Cifar10::DIR, "test_batch.bin", "batches.meta.txt", 1)
    };
    let root = dir.join(folder);
    std::fs::create_dir_all(&root).expect("the scratch folder");
    let batch = root.join(batch);
    std::fs::write(&batch, records).expect("the batch file");
    if mode & 2 != 0 {
        std::fs::write(root.join(meta_file), meta).expect("the meta file");
    }
    let loaded = match (hundred, mode & 4 != 0) {
        (false, _) => Cifar10::load(dir, Split::Test),
        (true, false) => Cifar100::load(dir, Split::Test),
        (true, true) => Cifar100::load_coarse(dir, Split::Test),
    };
    let dataset = match loaded {
        Ok(d) => d,
        // The batch or the meta file: both sit in `root`.
        Err(e) => return refused(&e, &root),
    };
    let record = label_bytes + PIXELS;
    assert_eq!(dataset.len(), records.len() / record, "records counted wrong");
    for i in 0..dataset.len().min(8) {
        let sample = dataset.get(i).expect("a sample of a loaded batch");
        assert!(sample.label.is_none_or(|l| l < dataset.num_classes()), "label out of range");
        assert!(dataset.image(i).is_some());
    }
    assert!(dataset.get(dataset.len()).is_err(), "a sample past the end");
    Outcome::Accepted
}

fn records(label_bytes: usize, labels: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        assert_eq!(label.len(), label_bytes);
        out.extend_from_slice(label);
        out.extend((0..PIXELS).map(|p| (p * 7 + i * 31) as u8));
    }
    out
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let ten = records(1, &[&[3], &[9]]);
    let hundred = records(2, &[&[19, 99], &[0, 5]]);
    let names: Vec<u8> = b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n".to_vec();
    let with = |mode: u8, meta: &[u8], body: &[u8]| {
        let mut v = vec![mode, meta.len() as u8];
        v.extend_from_slice(meta);
        v.extend_from_slice(body);
        v
    };
    vec![
        ("ok-cifar10".into(), with(0, b"", &ten)),
        ("ok-cifar10-names".into(), with(2, &names, &ten)),
        ("ok-cifar100".into(), with(1, b"", &hundred)),
        ("ok-cifar100-coarse".into(), with(5, b"", &hundred)),
        ("err-cifar10-short".into(), with(0, b"", &ten[..ten.len() - 1])),
        ("err-cifar10-label".into(), with(0, b"", &records(1, &[&[10]]))),
        ("err-cifar10-names".into(), with(2, b"a\nb\n", &ten)),
        ("err-cifar100-label".into(), with(1, b"", &records(2, &[&[20, 0]]))),
        ("err-empty".into(), with(0, b"", b"")),
    ]
}
