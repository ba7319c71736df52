//! CIFAR-10 and CIFAR-100 in their binary format (Krizhevsky, 2009), held in memory as `u8`.
//!
//! A CIFAR-10 record is 1 label byte then 3,072 pixel bytes: the red, green and blue planes,
//! each 32x32 row-major. A CIFAR-100 record has two label bytes, coarse then fine, then the
//! same 3,072 pixel bytes.

use std::path::{Path, PathBuf};

use crate::dataset::{Dataset, Sample, check_index};
use crate::error::{DataError, Result, io_err};

/// Side of a CIFAR image.
pub const CIFAR_SIDE: u32 = 32;
/// Pixel bytes per CIFAR image (3 planes of 32x32).
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;

/// CIFAR-10's classes, in label order (`batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// CIFAR-100's 20 superclasses, in coarse-label order (`coarse_label_names.txt`).
pub const CIFAR100_COARSE_CLASSES: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// CIFAR-100's 100 classes, in fine-label order (`fine_label_names.txt`).
pub const CIFAR100_FINE_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// Which half of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training images (CIFAR: 50,000).
    Train,
    /// The test images (CIFAR: 10,000).
    Test,
}

impl Split {
    /// `"train"` or `"test"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Layout of one CIFAR variant's files.
struct Format {
    /// Folder inside the archive (also accepted as a subfolder of the directory given).
    dir: &'static str,
    /// Label bytes before the pixels of each record.
    label_bytes: usize,
    train: &'static [&'static str],
    test: &'static [&'static str],
    /// Records of each official training file.
    train_records: usize,
    /// Records of each official test file.
    test_records: usize,
}

const CIFAR10: Format = Format {
    dir: Cifar10::DIR,
    label_bytes: 1,
    train: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ],
    test: &["test_batch.bin"],
    train_records: 10_000,
    test_records: 10_000,
};

const CIFAR100: Format = Format {
    dir: Cifar100::DIR,
    label_bytes: 2,
    train: &["train.bin"],
    test: &["test.bin"],
    train_records: 50_000,
    test_records: 10_000,
};

/// `dir/sub` when it is a directory, else `dir` itself.
fn resolve_dir(dir: &Path, sub: &str) -> PathBuf {
    let nested = dir.join(sub);
    if nested.is_dir() { nested } else { dir.to_path_buf() }
}

/// Class names from a text file with one name per line (CIFAR's meta files), falling back to
/// `builtin` when the file is absent; an error when it is present but lists another count.
fn class_names(path: &Path, builtin: &[&str]) -> Result<Vec<String>> {
    if !path.is_file() {
        return Ok(builtin.iter().map(|s| (*s).to_owned()).collect());
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if names.len() != builtin.len() {
        return Err(DataError::InvalidFile {
            path: path.to_path_buf(),
            reason: format!("lists {} class names, expected {}", names.len(), builtin.len()),
        });
    }
    Ok(names)
}

/// Refuses a file of `split` cut short at a record boundary, which reads as a smaller dataset:
/// once any file of the folder holds its official record count, the folder is CIFAR's own and
/// every file of the split must hold its official count. (Smaller folders in CIFAR's format,
/// such as test fixtures, have no file of the official size and are read as they are.)
fn check_record_counts(dir: &Path, format: &Format, split: Split) -> Result<()> {
    let record = (format.label_bytes + CIFAR_PIXELS) as u64;
    let official = |files: &'static [&'static str], n: usize| files.iter().map(move |f| (*f, n));
    let all: Vec<(&str, usize)> = official(format.train, format.train_records)
        .chain(official(format.test, format.test_records))
        .collect();
    let count = |file: &str| {
        let size = std::fs::metadata(dir.join(file)).ok()?.len();
        (size % record == 0).then_some((size / record) as usize)
    };
    let Some((whole, _)) = all.iter().find(|&&(file, n)| count(file) == Some(n)) else {
        return Ok(());
    };
    let (files, expected) = match split {
        Split::Train => (format.train, format.train_records),
        Split::Test => (format.test, format.test_records),
    };
    for file in files {
        match count(file) {
            Some(n) if n != expected => {
                return Err(DataError::InvalidFile {
                    path: dir.join(file),
                    reason: format!(
                        "{n} records where the official file holds {expected}, and {whole} here is \
                         whole: the file is cut short; fetch it again (`simsiam download`)"
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Records of one file, appended to `pixels` and `labels` (one `Vec` per label byte).
///
/// `limits[k]` is the number of classes of label byte `k`.
fn read_records(
    path: &Path,
    label_bytes: usize,
    limits: &[usize],
    pixels: &mut Vec<u8>,
    labels: &mut [Vec<u8>],
) -> Result<()> {
    if !path.is_file() {
        return Err(DataError::MissingFile { path: path.to_path_buf(), what: "CIFAR batch".into() });
    }
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let record = label_bytes + CIFAR_PIXELS;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(DataError::InvalidFile {
            path: path.to_path_buf(),
            reason: format!(
                "size {} bytes is not a positive multiple of the {record}-byte record",
                bytes.len()
            ),
        });
    }
    let count = bytes.len() / record;
    pixels.reserve(count * CIFAR_PIXELS);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        for (k, (&label, &limit)) in rec[..label_bytes].iter().zip(limits).enumerate() {
            if usize::from(label) >= limit {
                return Err(DataError::InvalidFile {
                    path: path.to_path_buf(),
                    reason: format!(
                        "record {i} of {count}: label byte {k} is {label}, expected below {limit}"
                    ),
                });
            }
            labels[k].push(label);
        }
        pixels.extend_from_slice(&rec[label_bytes..]);
    }
    Ok(())
}

/// The CIFAR-10 reader.
#[derive(Debug, Clone, Copy)]
pub struct Cifar10;

impl Cifar10 {
    /// The folder of the binary archive, `cifar-10-batches-bin`.
    pub const DIR: &'static str = "cifar-10-batches-bin";

    /// Loads a split from `dir`: the `cifar-10-batches-bin` folder itself or its parent.
    ///
    /// The train split reads `data_batch_1.bin` to `data_batch_5.bin`, the test split
    /// `test_batch.bin`; class names come from `batches.meta.txt` when present.
    ///
    /// # Errors
    /// A missing file, a size that is not a whole number of records, a file cut short at a
    /// record boundary (fewer than the official 10,000 records while another file of the folder
    /// holds its official count), or a label above 9, naming the file (and the record).
    pub fn load(dir: &Path, split: Split) -> Result<CifarDataset> {
        let dir = resolve_dir(dir, CIFAR10.dir);
        let names = class_names(&dir.join("batches.meta.txt"), &CIFAR10_CLASSES)?;
        load(&dir, split, &CIFAR10, names, None, false)
    }
}

/// The CIFAR-100 reader.
#[derive(Debug, Clone, Copy)]
pub struct Cifar100;

impl Cifar100 {
    /// The folder of the binary archive, `cifar-100-binary`.
    pub const DIR: &'static str = "cifar-100-binary";

    /// Loads a split from `dir` (the `cifar-100-binary` folder itself or its parent) with the
    /// 100 fine labels as [`Sample::label`]; the coarse ones stay available through
    /// [`CifarDataset::coarse_labels`].
    ///
    /// # Errors
    /// As [`Cifar10::load`] (labels must be below 20 and 100).
    pub fn load(dir: &Path, split: Split) -> Result<CifarDataset> {
        Self::load_inner(dir, split, false)
    }

    /// As [`Cifar100::load`], with the 20 coarse labels (superclasses) as [`Sample::label`]
    /// and as [`CifarDataset::class_names`].
    ///
    /// # Errors
    /// As [`Cifar100::load`].
    pub fn load_coarse(dir: &Path, split: Split) -> Result<CifarDataset> {
        Self::load_inner(dir, split, true)
    }

    fn load_inner(dir: &Path, split: Split, coarse: bool) -> Result<CifarDataset> {
        let dir = resolve_dir(dir, CIFAR100.dir);
        let fine = class_names(&dir.join("fine_label_names.txt"), &CIFAR100_FINE_CLASSES)?;
        let coarse_names = class_names(&dir.join("coarse_label_names.txt"), &CIFAR100_COARSE_CLASSES)?;
        load(&dir, split, &CIFAR100, fine, Some(coarse_names), coarse)
    }
}

fn load(
    dir: &Path,
    split: Split,
    format: &Format,
    names: Vec<String>,
    coarse_names: Option<Vec<String>>,
    use_coarse: bool,
) -> Result<CifarDataset> {
    let files = match split {
        Split::Train => format.train,
        Split::Test => format.test,
    };
    check_record_counts(dir, format, split)?;
    let mut pixels = Vec::new();
    let mut labels = vec![Vec::new(); format.label_bytes];
    // CIFAR-100 stores the coarse label first.
    let limits: Vec<usize> = match &coarse_names {
        Some(c) => vec![c.len(), names.len()],
        None => vec![names.len()],
    };
    for file in files {
        read_records(&dir.join(file), format.label_bytes, &limits, &mut pixels, &mut labels)?;
    }
    let fine_labels = labels.pop().unwrap_or_default();
    let coarse_labels = labels.pop();
    Ok(CifarDataset {
        dir: dir.to_path_buf(),
        split,
        pixels,
        fine_labels,
        coarse_labels,
        names,
        coarse_names,
        use_coarse,
    })
}

/// A CIFAR split in memory: pixels as `u8` (planar, 3,072 bytes per image), labels, names.
#[derive(Debug, Clone)]
pub struct CifarDataset {
    dir: PathBuf,
    split: Split,
    pixels: Vec<u8>,
    fine_labels: Vec<u8>,
    coarse_labels: Option<Vec<u8>>,
    names: Vec<String>,
    coarse_names: Option<Vec<String>>,
    use_coarse: bool,
}

impl CifarDataset {
    /// The folder the files were read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The split.
    pub fn split(&self) -> Split {
        self.split
    }

    /// The class names of [`Sample::label`], in label order.
    pub fn class_names(&self) -> &[String] {
        match (&self.coarse_names, self.use_coarse) {
            (Some(coarse), true) => coarse,
            _ => &self.names,
        }
    }

    /// Number of classes of [`Sample::label`].
    pub fn num_classes(&self) -> usize {
        self.class_names().len()
    }

    /// The labels that [`Dataset::get`] returns, one per image.
    pub fn labels(&self) -> &[u8] {
        match (&self.coarse_labels, self.use_coarse) {
            (Some(coarse), true) => coarse,
            _ => &self.fine_labels,
        }
    }

    /// CIFAR-10's labels, or CIFAR-100's fine labels.
    pub fn fine_labels(&self) -> &[u8] {
        &self.fine_labels
    }

    /// CIFAR-100's coarse labels (`None` for CIFAR-10).
    pub fn coarse_labels(&self) -> Option<&[u8]> {
        self.coarse_labels.as_deref()
    }

    /// CIFAR-100's superclass names (`None` for CIFAR-10).
    pub fn coarse_class_names(&self) -> Option<&[String]> {
        self.coarse_names.as_deref()
    }

    /// Image `index` as stored: 3,072 bytes, the R, G and B planes (`None` past the end).
    pub fn planar(&self, index: usize) -> Option<&[u8]> {
        self.pixels.get(index * CIFAR_PIXELS..(index + 1) * CIFAR_PIXELS)
    }

    /// Image `index` as an interleaved RGB image (`None` past the end).
    pub fn image(&self, index: usize) -> Option<image::RgbImage> {
        let planar = self.planar(index)?;
        let plane = CIFAR_PIXELS / 3;
        let (r, rest) = planar.split_at(plane);
        let (g, b) = rest.split_at(plane);
        let mut rgb = Vec::with_capacity(CIFAR_PIXELS);
        for ((&r, &g), &b) in r.iter().zip(g).zip(b) {
            rgb.extend_from_slice(&[r, g, b]);
        }
        image::RgbImage::from_raw(CIFAR_SIDE, CIFAR_SIDE, rgb)
    }
}

impl Dataset for CifarDataset {
    fn len(&self) -> usize {
        self.fine_labels.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.len())?;
        let image = self.image(index).ok_or(DataError::IndexOutOfRange { index, len: self.len() })?;
        Ok(Sample {
            image,
            label: Some(usize::from(self.labels()[index])),
            name: format!("{}/{index:05}", self.split.as_str()),
        })
    }
}
