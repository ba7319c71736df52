//! The closed sets of the run configuration: each a Rust enum written in TOML as the same
//! text as always, so a bad value is refused when the config is read, naming what is allowed.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value outside its closed set: `unknown loss `x`: use negative_cosine or ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownChoice {
    what: &'static str,
    value: String,
    allowed: &'static [&'static str],
}

impl UnknownChoice {
    fn new(what: &'static str, value: &str, allowed: &'static [&'static str]) -> Self {
        Self { what, value: value.to_owned(), allowed }
    }
}

impl fmt::Display for UnknownChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} `{}`: use {}", self.what, self.value, one_of(self.allowed))
    }
}

impl std::error::Error for UnknownChoice {}

/// `a, b or c`.
fn one_of(allowed: &[&str]) -> String {
    match allowed {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Serialises as its text and deserialises through [`FromStr`], whose error names the set.
macro_rules! text_serde {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(D::Error::custom)
            }
        }
    };
}

/// A fieldless enum spelled as fixed words, with `ALL`, `as_str`, `FromStr`, `Display` and
/// serde as that text.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order the error message lists them.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            const NAMES: &'static [&'static str] = &[$($text),+];

            /// The word the config file uses.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownChoice;

            fn from_str(text: &str) -> Result<Self, UnknownChoice> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownChoice::new($what, other, Self::NAMES)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        text_serde!($name);
    };
}

choice! {
    /// A named configuration to start from: five published recipes and our CPU recipe for
    /// CIFAR-10 (the sources, file and line, are in `config/presets.rs` and `docs/presets.md`).
    pub enum Preset ("preset") {
        /// Lightly's `examples/pytorch/simsiam.py`: CIFAR-10, plain SGD lr 0.06, 10 epochs.
        LightlyExample = "lightly-example",
        /// Lightly's CIFAR-10 benchmark: CIFAR ResNet-18, cosine SGD, 200 epochs.
        LightlyCifar10Benchmark = "lightly-cifar10-benchmark",
        /// Lightly's Tutorial 4 (`tutorial_simsiam_esa.py`): a folder of satellite tiles.
        Satellite = "satellite",
        /// The paper's CIFAR-10 recipe with the official code's model.
        Cifar10Paper = "cifar10-paper",
        /// The official code's ImageNet recipe: ResNet-50, batch 512, 100 epochs.
        ImagenetPaper = "imagenet-paper",
        /// Ours: what learns most per CPU minute on CIFAR-10 (docs/training.md's recipe sweep):
        /// width-16 ResNet-18, no blur, batch 128, cosine per iteration, 200 epochs.
        Cifar10Cpu = "cifar10-cpu",
    }
}

choice! {
    /// Where the images come from.
    pub enum DatasetKind ("dataset") {
        /// CIFAR-10's binary batches.
        Cifar10 = "cifar10",
        /// CIFAR-100's binary files.
        Cifar100 = "cifar100",
        /// A folder of images, labelled by subfolder when there are several.
        Folder = "folder",
    }
}

impl DatasetKind {
    /// CIFAR-10 or CIFAR-100: 32x32 images with a test split.
    pub fn is_cifar(self) -> bool {
        matches!(self, Self::Cifar10 | Self::Cifar100)
    }
}

choice! {
    /// The per-channel mean and standard deviation of the inputs.
    pub enum NormalizationKind ("normalisation") {
        /// CIFAR-10's statistics.
        Cifar10 = "cifar10",
        /// ImageNet's statistics.
        Imagenet = "imagenet",
    }
}

choice! {
    /// How a folder's images become evaluation inputs.
    #[derive(Default)]
    pub enum EvalResizeKind ("evaluation resize") {
        /// Shorter side to `input_size * 8 / 7`, then a centred `input_size` square.
        #[default]
        CenterCrop = "center_crop",
        /// A plain resize to `input_size x input_size` (Lightly's Tutorial 4).
        Resize = "resize",
    }
}

choice! {
    /// The backbone network.
    pub enum Backbone ("backbone") {
        /// ResNet-18.
        Resnet18 = "resnet18",
        /// ResNet-34.
        Resnet34 = "resnet34",
        /// ResNet-50.
        Resnet50 = "resnet50",
    }
}

choice! {
    /// The backbone's first layers.
    pub enum StemKind ("stem") {
        /// torchvision's 7x7 convolution with max-pool.
        Imagenet = "imagenet",
        /// One 3x3 convolution, no max-pool.
        Cifar = "cifar",
    }
}

choice! {
    /// The similarity the two branches are trained on.
    pub enum LossKind ("loss") {
        /// The paper's negative cosine similarity.
        NegativeCosine = "negative_cosine",
        /// The symmetrised cross-entropy variant of the paper's Table 4.
        SymmetrizedCrossEntropy = "symmetrized_cross_entropy",
    }
}

choice! {
    /// The dtype of convolutions and matrix products.
    #[derive(Default)]
    pub enum PrecisionKind ("precision") {
        /// bf16 on CUDA, f32 elsewhere.
        #[default]
        Auto = "auto",
        /// f32 throughout.
        F32 = "f32",
        /// bf16 products, f32 weights and statistics.
        Bf16 = "bf16",
    }
}

/// The device to compute on: `cpu`, `cuda`, `cuda:N` or `metal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// The CPU.
    Cpu,
    /// A CUDA GPU: `cuda` (device 0, written without the number) or `cuda:N`.
    Cuda(Option<usize>),
    /// The Metal GPU.
    Metal,
}

impl DeviceKind {
    /// The CUDA ordinal, 0 for a plain `cuda`; `None` off CUDA.
    pub fn cuda_ordinal(self) -> Option<usize> {
        match self {
            Self::Cuda(n) => Some(n.unwrap_or(0)),
            Self::Cpu | Self::Metal => None,
        }
    }
}

impl FromStr for DeviceKind {
    type Err = UnknownChoice;

    fn from_str(text: &str) -> Result<Self, UnknownChoice> {
        match text {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(None)),
            "metal" => Ok(Self::Metal),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(Some(n))),
                _ => Err(UnknownChoice::new("device", other, &["cpu", "cuda", "cuda:N", "metal"])),
            },
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(None) => f.write_str("cuda"),
            Self::Cuda(Some(n)) => write!(f, "cuda:{n}"),
            Self::Metal => f.write_str("metal"),
        }
    }
}

text_serde!(DeviceKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_reads_back_its_own_text() {
        for &p in Preset::ALL {
            assert_eq!(p.as_str().parse::<Preset>(), Ok(p));
        }
        for &d in DatasetKind::ALL {
            assert_eq!(d.to_string().parse::<DatasetKind>(), Ok(d));
        }
        for &l in LossKind::ALL {
            assert_eq!(l.as_str().parse::<LossKind>(), Ok(l));
        }
        for d in [DeviceKind::Cpu, DeviceKind::Cuda(None), DeviceKind::Cuda(Some(3)), DeviceKind::Metal] {
            assert_eq!(d.to_string().parse::<DeviceKind>(), Ok(d));
        }
    }

    #[test]
    fn unknown_values_name_the_set() {
        let e = "vgg".parse::<Backbone>().expect_err("refused").to_string();
        assert_eq!(e, "unknown backbone `vgg`: use resnet18, resnet34 or resnet50");
        let e = "tpu".parse::<DeviceKind>().expect_err("refused").to_string();
        assert_eq!(e, "unknown device `tpu`: use cpu, cuda, cuda:N or metal");
        for bad in ["cuda:", "cuda:x", "cuda:-1", "CPU", " cpu"] {
            assert!(bad.parse::<DeviceKind>().is_err(), "{bad}");
        }
        assert_eq!(DeviceKind::Cuda(None).cuda_ordinal(), Some(0));
        assert_eq!(DeviceKind::Cuda(Some(2)).cuda_ordinal(), Some(2));
        assert_eq!(DeviceKind::Metal.cuda_ordinal(), None);
    }

    #[test]
    fn serde_uses_the_text() -> anyhow::Result<()> {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct T {
            loss: LossKind,
            device: DeviceKind,
        }
        let t = T { loss: LossKind::SymmetrizedCrossEntropy, device: DeviceKind::Cuda(Some(1)) };
        let text = toml::to_string(&t)?;
        assert_eq!(text, "loss = \"symmetrized_cross_entropy\"\ndevice = \"cuda:1\"\n");
        assert_eq!(toml::from_str::<T>(&text)?, t);
        let e = toml::from_str::<T>("loss = \"l2\"\ndevice = \"cpu\"\n").expect_err("refused").to_string();
        assert!(e.contains("unknown loss `l2`: use negative_cosine or symmetrized_cross_entropy"), "{e}");
        assert!(e.contains("loss = \"l2\""), "the key is not shown: {e}");
        Ok(())
    }
}
