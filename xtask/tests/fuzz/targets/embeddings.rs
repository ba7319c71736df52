//! Embeddings: `figures::read_embeddings`, the reader of `simsiam neighbors` and `scatter`,
//! on Lightly's CSV layout and on `simsiam embed`'s safetensors (through
//! `read_embeddings_safetensors`), then what those commands compute from it: the nearest
//! neighbours of the first row and the 2-D PCA.
//!
//! Input: `[kind, file..]`; kind bit 0 picks `.safetensors` over `.csv`.

use std::path::Path;

use candle::{Device, Tensor};
use simsiam::figures::{nearest_neighbors, pca_2d, read_embeddings};
use simsiam::train::{write_embeddings_csv, write_embeddings_safetensors};

use super::{Outcome, Target, refused, written};

pub const TARGET: Target = Target {
    name: "embeddings",
    seeds,
    run,
    tokens: &[
        b"filenames",
        b"embedding_0",
        b"embedding_1",
        b",labels",
        b"\"\"",
        b"1e38",
        b"3.4028236e38",
        b"-0",
        b"filenames\"",
        b"embeddings",
        b"labels",
        b"\"I64\"",
        b"\"F32\"",
    ],
};

fn run(dir: &Path, data: &[u8]) -> Outcome {
    let (kind, file) = data.split_first().map_or((0, &[][..]), |(k, f)| (*k, f));
    let name = if kind & 1 == 1 { "embeddings.safetensors" } else { "embeddings.csv" };
    let path = dir.join(name);
    std::fs::write(&path, file).expect("the embeddings file");
    let table = match read_embeddings(&path) {
        Ok(table) => table,
        Err(e) => return refused(&e, &path),
    };
    assert!(!table.is_empty(), "no embeddings accepted");
    let values: Vec<f32> = table.rows().flatten().copied().collect();
    assert!(values.iter().all(|v| v.is_finite()), "a value that is not finite was accepted");
    let neighbours = nearest_neighbors(&table, 0, 5).expect("neighbours of the first row");
    assert!(neighbours.len() <= 5 && neighbours.iter().all(|&(i, _)| i != 0 && i < table.len()));
    let dim = values.len() / table.len();
    // The PCA may refuse degenerate tables; it must not panic.
    let _ = pca_2d(&values, dim);
    Outcome::Accepted
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let names: Vec<String> = ["a.png", "dog/b, \"c\".png", "c.jpg"].map(str::to_owned).to_vec();
    let values = Tensor::new(&[[0.5f32, -1.0], [0.25, 3.0], [1e-3, 0.0]], &Device::Cpu).expect("a tensor");
    let labels = [Some(1), None, Some(0)];
    let csv = written(|p| write_embeddings_csv(p, &names, &values, &labels).expect("a CSV"));
    let st = written(|p| write_embeddings_safetensors(p, &names, &values, &labels).expect("a safetensors"));
    let one = |kind: u8, file: &[u8]| [&[kind][..], file].concat();
    vec![
        ("ok-csv".into(), one(0, &csv)),
        ("ok-safetensors".into(), one(1, &st)),
        ("ok-crlf".into(), one(0, b"filenames,embedding_0,labels\r\nx,1.5,0\r\n")),
        ("err-csv-header".into(), one(0, b"name,e0,label\nx,1,0\n")),
        ("err-csv-nan".into(), one(0, b"filenames,embedding_0,labels\nx,NaN,0\n")),
        ("err-csv-quote".into(), one(0, b"filenames,embedding_0,labels\n\"x,1,0\n")),
        ("err-csv-header-only".into(), one(0, b"filenames,embedding_0,labels\n")),
        ("err-safetensors-truncated".into(), one(1, &st[..st.len() - 3])),
        ("err-empty".into(), one(0, b"")),
    ]
}
