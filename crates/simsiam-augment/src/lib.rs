//! Image augmentations for SimSiam, on RGB u8 buffers and without candle.
//!
//! The augmentations (SimSiamTransform and its ops) arrive with the augmentation issue.
