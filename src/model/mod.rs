//! The models (`zoo`), their state_dict and training-state files (`state`) and `summary`.
//! The layers they are made of live in `crate::nn`.

pub mod file;
pub mod state;
pub mod summary;
pub mod zoo;

use crate::nn::Feat;

/// An MNIST image: one channel of 28 × 28.
pub const IMAGE: Feat = Feat { c: 1, h: 28, w: 28 };
pub const IMAGE_PIXELS: usize = 28 * 28;
pub const CLASSES: usize = 10;

pub use crate::nn::model::{Arch, Model};
