//! The SimSiam trainer.
//!
//! This crate will hold SGD with momentum and weight decay, cosine schedules, the training
//! loop, atomic checkpoints, the kNN monitor and linear evaluation. It arrives with the
//! trainer issue; today it holds only its manifest.
