//! `train.online_probe`: whether pretraining trains an online linear probe on the labels,
//! written `"auto"`, `true` or `false`.

use std::fmt;

use anyhow::{Result, bail};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether to train an online linear probe (Lightly's `OnlineLinearClassifier`) during
/// pretraining: `auto` (the default) where the dataset has labels, `true` always (an error on
/// an unlabelled dataset), `false` never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OnlineProbeSetting {
    /// On where the dataset has labels (CIFAR, a folder with a sub-folder per class).
    #[default]
    Auto,
    /// On; an unlabelled dataset is a configuration error.
    On,
    /// Off.
    Off,
}

impl OnlineProbeSetting {
    /// The number of classes the probe learns, or `None` for no probe, given the dataset's
    /// class count (`None` when unlabelled); `dataset` names it in the error of `true` on an
    /// unlabelled dataset.
    pub fn classes(self, dataset_classes: Option<usize>, dataset: &str) -> Result<Option<usize>> {
        match (self, dataset_classes) {
            (Self::Off, _) | (Self::Auto, None) => Ok(None),
            (Self::Auto | Self::On, Some(classes)) => Ok(Some(classes)),
            (Self::On, None) => bail!(
                "train.online_probe = true needs labels, and {dataset} has none (a folder is labelled by \
                 its sub-folders, at least two): set train.online_probe to \"auto\" or false"
            ),
        }
    }
}

impl fmt::Display for OnlineProbeSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "true",
            Self::Off => "false",
        })
    }
}

impl Serialize for OnlineProbeSetting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::On => serializer.serialize_bool(true),
            Self::Off => serializer.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for OnlineProbeSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Setting;

        impl Visitor<'_> for Setting {
            type Value = OnlineProbeSetting;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"auto\", true or false")
            }

            fn visit_bool<E: de::Error>(self, on: bool) -> Result<Self::Value, E> {
                Ok(if on { OnlineProbeSetting::On } else { OnlineProbeSetting::Off })
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                match text {
                    "auto" => Ok(OnlineProbeSetting::Auto),
                    "true" => Ok(OnlineProbeSetting::On),
                    "false" => Ok(OnlineProbeSetting::Off),
                    other => {
                        Err(E::custom(format!("unknown online_probe `{other}`: use \"auto\", true or false")))
                    }
                }
            }
        }

        deserializer.deserialize_any(Setting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct T {
        online_probe: OnlineProbeSetting,
    }

    #[test]
    fn reads_auto_true_and_false_and_refuses_the_rest() -> anyhow::Result<()> {
        for (text, setting) in [
            ("online_probe = \"auto\"\n", OnlineProbeSetting::Auto),
            ("online_probe = true\n", OnlineProbeSetting::On),
            ("online_probe = false\n", OnlineProbeSetting::Off),
        ] {
            let t: T = toml::from_str(text)?;
            assert_eq!(t.online_probe, setting);
            assert_eq!(toml::to_string(&t)?, text);
        }
        let e = toml::from_str::<T>("online_probe = \"yes\"\n").expect_err("refused").to_string();
        assert!(e.contains("unknown online_probe `yes`: use \"auto\", true or false"), "{e}");
        assert!(toml::from_str::<T>("online_probe = 1\n").is_err());
        Ok(())
    }

    #[test]
    fn auto_follows_the_labels_and_true_needs_them() {
        let on = |s: OnlineProbeSetting, c| s.classes(c, "the folder x").map_err(|e| e.to_string());
        assert_eq!(on(OnlineProbeSetting::Auto, Some(10)), Ok(Some(10)));
        assert_eq!(on(OnlineProbeSetting::Auto, None), Ok(None));
        assert_eq!(on(OnlineProbeSetting::Off, Some(10)), Ok(None));
        assert_eq!(on(OnlineProbeSetting::On, Some(3)), Ok(Some(3)));
        let e = on(OnlineProbeSetting::On, None).expect_err("no labels");
        assert!(e.starts_with("train.online_probe = true needs labels, and the folder x has none"), "{e}");
    }
}
