//! MNIST-format data directories: the four IDX files of a training and a test split.
//!
//! Real MNIST, Fashion-MNIST and KMNIST all ship this way. Debian's
//! `dataset-fashion-mnist` package installs Fashion-MNIST under
//! [`DEBIAN_FASHION_MNIST`], which is the default when `$NNC_DATA` is not set.

use crate::dataset::Dataset;
use crate::error::TrainError;
use crate::idx::{read_idx, read_idx_dims};
use ndarray::{ArrayD, IxDyn};
use nnc_ir::{MemoryBudget, Tensor};
use std::path::{Path, PathBuf};

/// The environment variable naming the data directory.
pub const DATA_ENV: &str = "NNC_DATA";
/// Where Debian's `dataset-fashion-mnist` installs its files.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Pixels are scaled to [0, 1] by dividing by this ([`crate::dataset::byte_value`]).
const PIXEL_DIVISOR: f32 = 255.0;

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// `$NNC_DATA` if set and not empty, else [`DEBIAN_FASHION_MNIST`].
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os(DATA_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEBIAN_FASHION_MNIST),
    }
}

/// Loads the training and test splits from a directory holding
/// `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
/// and `t10k-labels-idx1-ubyte`, each optionally `.gz`. Pixels are scaled to [0, 1]
/// as batches are gathered (held as bytes, [`crate::Examples::Bytes`], divisor 255);
/// images are `[n, rows, cols]` (see [`crate::fit_to_input`]); labels are i64.
/// The memory budget is the default one ([`load_mnist_dir_with`]).
pub fn load_mnist_dir(dir: &Path) -> Result<(Dataset, Dataset), TrainError> {
    load_mnist_dir_with(dir, MemoryBudget::default())
}

/// [`load_mnist_dir`], refusing (from the IDX headers, before reading any data) a
/// data set whose two splits need more than `budget` in memory: a byte per pixel
/// (as in the files) and 8 (i64) per label.
pub fn load_mnist_dir_with(dir: &Path, budget: MemoryBudget) -> Result<(Dataset, Dataset), TrainError> {
    if !dir.is_dir() {
        return Err(TrainError::MissingFiles {
            dir: dir.to_path_buf(),
            message: format!(
                "no such directory (the data directory is ${DATA_ENV}, or {DEBIAN_FASHION_MNIST} from Debian's \
                 dataset-fashion-mnist package)"
            ),
        });
    }
    let names = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];
    let found: Vec<Option<PathBuf>> = names.iter().map(|n| find(dir, n)).collect();
    let missing: Vec<String> =
        names.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(n, _)| format!("{n}[.gz]")).collect();
    if !missing.is_empty() {
        return Err(TrainError::MissingFiles {
            dir: dir.to_path_buf(),
            message: format!(
                "not an MNIST-format data directory: missing {} (expected the IDX files {}, each optionally \
                 gzip-compressed with a .gz name)",
                missing.join(", "),
                names.join(", ")
            ),
        });
    }
    let path = |i: usize| found[i].as_deref().expect("checked above");
    check_budget(dir, [path(0), path(1), path(2), path(3)], budget)?;
    let train = load_split(path(0), path(1))?;
    let test = load_split(path(2), path(3))?;
    Ok((train, test))
}

/// Checks what the four files declare against `budget`: `files` are the training
/// images and labels, then the test images and labels.
fn check_budget(dir: &Path, files: [&Path; 4], budget: MemoryBudget) -> Result<(), TrainError> {
    let mut dims = Vec::with_capacity(4);
    for f in files {
        dims.push(read_idx_dims(f)?);
    }
    let count = |d: &[usize]| d.iter().fold(1u64, |acc, &x| acc.saturating_mul(x as u64));
    let need = [(&dims[0], 1u64), (&dims[1], 8), (&dims[2], 1), (&dims[3], 8)]
        .iter()
        .fold(0u64, |acc, (d, width)| acc.saturating_add(count(d).saturating_mul(*width)));
    let shape = |d: &[usize]| d.iter().skip(1).map(usize::to_string).collect::<Vec<_>>().join("×");
    let first = |d: &[usize]| d.first().copied().unwrap_or(0);
    let what = format!(
        "the data set ({} training and {} test images of {}, a byte per pixel)",
        first(&dims[0]),
        first(&dims[2]),
        shape(&dims[0])
    );
    budget.check(what, need).map_err(|message| TrainError::idx(dir, message))
}

/// One split: an images file `[n, rows, cols]` of u8 and a labels file `[n]` of u8.
pub fn load_split(images: &Path, labels: &Path) -> Result<Dataset, TrainError> {
    let img = read_idx(images)?;
    if img.dims.len() != 3 {
        return Err(TrainError::idx(
            images,
            format!("an images file has 3 dimensions [images, rows, columns], this one has {:?}", img.dims),
        ));
    }
    let lab = read_idx(labels)?;
    if lab.dims.len() != 1 {
        return Err(TrainError::idx(labels, format!("a labels file has 1 dimension, this one has {:?}", lab.dims)));
    }
    if lab.dims[0] != img.dims[0] {
        return Err(TrainError::idx(
            labels,
            format!("has {} labels, but {} has {} images", lab.dims[0], images.display(), img.dims[0]),
        ));
    }
    let classes: Vec<i64> = lab.data.iter().map(|&b| i64::from(b)).collect();
    // The pixels stay bytes (a quarter of their f32 size); batches hold byte / 255.
    let x = ArrayD::from_shape_vec(IxDyn(&img.dims), img.data).expect("read_idx checks the data length");
    let y = ArrayD::from_shape_vec(IxDyn(&lab.dims), classes).expect("read_idx checks the data length");
    Dataset::from_bytes(x, PIXEL_DIVISOR, Tensor::I64(y))
}

/// The file for `name` in `dir`: as is or `.gz`, also with the `.idx` spelling some
/// distributions use (`train-images.idx3-ubyte`).
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let dotted = name.replacen("-idx", ".idx", 1);
    [name.to_string(), format!("{name}.gz"), dotted.clone(), format!("{dotted}.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}
