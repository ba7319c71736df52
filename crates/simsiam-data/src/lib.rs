//! Datasets and loaders for SimSiam pretraining.
//!
//! This crate will hold the CIFAR-10/100 binary readers, an image-folder dataset (Lightly's
//! `LightlyDataset`), verified downloads and a deterministic two-view loader. It arrives with
//! the data issue; today it holds only its manifest.
