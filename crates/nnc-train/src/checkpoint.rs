//! Checkpoints of a training run, and resuming from them.
//!
//! A checkpoint directory holds one checkpoint, the file `checkpoint.nnc`, replaced
//! as a whole each time a checkpoint is written (`nnc_ir::fs::write_atomically`: a
//! temporary file, flushed to disk, renamed over the old one, then the directory
//! flushed). A process killed at any moment leaves the previous checkpoint or the new
//! one, complete, never a mixture. The directory also holds `lock`, locked while a
//! trainer writes there (two trainers cannot share a directory), and, after a crash,
//! the unfinished write's temporary file (`.checkpoint.nnc.<pid>.<n>.tmp`), removed by
//! the next trainer.
//!
//! A checkpoint holds what a run needs to continue exactly as if it had not stopped:
//! every parameter and optimizer-state tensor, the step counter (Adam's bias
//! correction), the epoch and the number of batches taken in it, the shuffling RNG's
//! position at the start of that epoch (the permutation is drawn again from there),
//! the per-step losses and epoch reports so far, and what identifies the run — the
//! model graph, optimizer, loss, learning rate, batch size, seed and a checksum of the
//! training set — which a resumed run must match.
//!
//! # The file (format version 1)
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `NNCCKPT\0` |
//! | 4 | format version, u32 little-endian |
//! | 4 | header length `H`, u32 LE |
//! | `H` | header: JSON (UTF-8), see `Header` |
//! | `P` | payload: each tensor's elements in row-major order, little-endian (bool: one byte 0/1), in the header's order; then the per-step losses, f32 LE |
//! | 4 | CRC-32 (IEEE) of every byte before it, u32 LE |
//!
//! The header gives every tensor's name, role, element type and shape, so `P` and the
//! file size follow from it: a truncated file is reported as such, and any other
//! change fails the checksum.

use crate::backend::StepBackend;
use crate::dataset::{byte_value, slice, Dataset, Examples};
use crate::error::TrainError;
use crate::metrics::Metrics;
use crate::train::{EpochReport, Plan, TrainConfig};
use nnc_autodiff::{Optimizer, TrainOptions};
use nnc_ir::fs::{leftover_temporaries, write_atomically};
use nnc_ir::{DType, Graph, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The checkpoint's file name inside a checkpoint directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.nnc";
/// The file locked while a trainer writes checkpoints into a directory.
const LOCK_FILE: &str = "lock";
const MAGIC: [u8; 8] = *b"NNCCKPT\0";
/// The version of the file layout and header this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the header (magic, version, header length).
const PREFIX: usize = 16;
/// A larger header is corrupt; real ones are a few kilobytes.
const MAX_HEADER: usize = 256 << 20;

/// What a checkpoint must match to continue a run: the model and every setting that
/// changes the parameters a step produces or the order the examples come in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunIdentity {
    /// A fingerprint of the model's graph (FNV-1a of its IR text, parameter values
    /// left out).
    pub model: String,
    /// `(name, value)` pairs, compared in order on resume: the first difference is
    /// the error.
    pub settings: Vec<(String, String)>,
}

impl RunIdentity {
    /// The identity of training `model` with `options` and `cfg` on `train_set`.
    /// Scans the training set once (a CRC-32 of its inputs and labels).
    pub fn new(model: &Graph, options: &TrainOptions, cfg: &TrainConfig, train_set: &Dataset) -> RunIdentity {
        let optimizer = match options.optimizer {
            Optimizer::Sgd => "sgd".to_string(),
            Optimizer::Momentum { momentum, nesterov: false } => format!("momentum {momentum}"),
            Optimizer::Momentum { momentum, nesterov: true } => format!("nesterov momentum {momentum}"),
            Optimizer::Adam { beta1, beta2, eps } => format!("adam (beta1 {beta1}, beta2 {beta2}, eps {eps:e})"),
        };
        let settings = [
            ("optimizer", optimizer),
            ("loss", options.loss.name().to_string()),
            ("weight decay", options.weight_decay.to_string()),
            ("loss on", options.output.clone().unwrap_or_else(|| "the model's output".into())),
            ("learning rate", cfg.lr.to_string()),
            ("batch size", cfg.batch.to_string()),
            ("shuffling", if cfg.shuffle { format!("on, seed {}", cfg.seed) } else { "off".into() }),
            ("training set", data_fingerprint(train_set)),
        ];
        RunIdentity {
            model: format!("{:016x}", fnv1a64(nnc_ir::print(model).as_bytes())),
            settings: settings.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
        }
    }
}

/// `60000 examples, crc32 1a2b3c4d`: the CRC-32 of the inputs' and labels' elements
/// (little-endian bytes, row-major). Inputs are hashed as their f32 values however
/// they are held, so a checkpoint resumes whichever way the data set was loaded.
fn data_fingerprint(ds: &Dataset) -> String {
    let mut crc = crc32fast::Hasher::new();
    let mut buf = Vec::with_capacity(1 << 16);
    match ds.inputs() {
        Examples::F32(a) => hash_elements(&mut crc, &mut buf, slice(a), |v| v.to_le_bytes()),
        Examples::Bytes { bytes, divisor } => {
            hash_elements(&mut crc, &mut buf, slice(bytes), |&b| byte_value(b, *divisor).to_le_bytes())
        }
    }
    match ds.labels() {
        Tensor::F32(a) => hash_elements(&mut crc, &mut buf, slice(a), |v| v.to_le_bytes()),
        Tensor::I64(a) => hash_elements(&mut crc, &mut buf, slice(a), |v| v.to_le_bytes()),
        Tensor::I32(a) => hash_elements(&mut crc, &mut buf, slice(a), |v| v.to_le_bytes()),
        Tensor::Bool(a) => hash_elements(&mut crc, &mut buf, slice(a), |v| [u8::from(*v)]),
    }
    format!("{} examples, crc32 {:08x}", ds.len(), crc.finalize())
}

fn hash_elements<T, const N: usize>(
    crc: &mut crc32fast::Hasher,
    buf: &mut Vec<u8>,
    values: &[T],
    bytes: impl Fn(&T) -> [u8; N],
) {
    for chunk in values.chunks(8192) {
        buf.clear();
        chunk.iter().for_each(|v| buf.extend_from_slice(&bytes(v)));
        crc.update(buf);
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Where a run stands: enough to take the next step exactly as an uninterrupted run
/// would, and to rebuild its report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Steps taken, skipped ones included; the next step is `step + 1`.
    pub step: u64,
    /// The 1-based epoch the next step belongs to.
    pub epoch: usize,
    /// Batches of that epoch already taken (less than the batches per epoch).
    pub epoch_steps: u64,
    /// The shuffling RNG's position (in 32-bit words, see
    /// `ChaCha8Rng::get_word_pos`) just before that epoch's permutation was drawn.
    pub rng_word_pos: u128,
    /// Steps skipped under [`crate::NanPolicy::Skip`], and how many of the last
    /// steps in a row were.
    pub skipped: u64,
    pub consecutive_skips: u64,
    /// Training examples processed (skipped steps' batches not counted).
    pub examples: u64,
    pub train_time: Duration,
    pub eval_time: Duration,
    /// The current epoch so far: training time, where its steps' losses start in
    /// [`Checkpoint::losses`], and its training-accuracy counts.
    pub epoch_time: Duration,
    pub epoch_losses_from: usize,
    pub epoch_correct: u64,
    pub epoch_scored: u64,
}

/// A training run's checkpoint, in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub identity: RunIdentity,
    /// The backend that wrote it (`jit`, `interp`); another backend may continue the
    /// run, but not bit for bit.
    pub backend: String,
    pub progress: Progress,
    /// The reports of the epochs completed so far.
    pub epochs: Vec<EpochReport>,
    /// Every trainable parameter, then the optimizer state, by name.
    pub params: Vec<(String, Tensor)>,
    pub state: Vec<(String, Tensor)>,
    /// The loss of every step taken so far, skipped steps left out.
    pub losses: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// The nnc version that wrote the file (informational).
    writer: String,
    backend: String,
    model: String,
    settings: Vec<(String, String)>,
    progress: ProgressRecord,
    epochs: Vec<EpochRecord>,
    tensors: Vec<TensorRecord>,
    /// The number of per-step losses after the tensors.
    losses: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressRecord {
    step: u64,
    epoch: usize,
    epoch_steps: u64,
    /// A u128 in decimal (JSON numbers are not that wide everywhere).
    rng_word_pos: String,
    skipped: u64,
    consecutive_skips: u64,
    examples: u64,
    train_time: Duration,
    eval_time: Duration,
    epoch_time: Duration,
    epoch_losses_from: usize,
    epoch_correct: u64,
    epoch_scored: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EpochRecord {
    epoch: usize,
    steps: u64,
    complete: bool,
    train: MetricsRecord,
    test: Option<MetricsRecord>,
    time: Duration,
}

/// f32s as their bit patterns: exact, and NaN and infinities survive JSON.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsRecord {
    loss_bits: u32,
    accuracy_bits: Option<u32>,
    examples: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorRecord {
    name: String,
    /// `param` or `state`.
    role: String,
    dtype: String,
    shape: Vec<usize>,
}

impl From<&Metrics> for MetricsRecord {
    fn from(m: &Metrics) -> Self {
        MetricsRecord { loss_bits: m.loss.to_bits(), accuracy_bits: m.accuracy.map(f32::to_bits), examples: m.examples }
    }
}

impl From<&MetricsRecord> for Metrics {
    fn from(m: &MetricsRecord) -> Self {
        Metrics {
            loss: f32::from_bits(m.loss_bits),
            accuracy: m.accuracy_bits.map(f32::from_bits),
            examples: m.examples,
        }
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::I64 => "i64",
        DType::I32 => "i32",
        DType::Bool => "bool",
    }
}

fn element_size(dtype: &str) -> Option<usize> {
    match dtype {
        "f32" | "i32" => Some(4),
        "i64" => Some(8),
        "bool" => Some(1),
        _ => None,
    }
}

fn put_tensor(out: &mut Vec<u8>, t: &Tensor) {
    match t {
        Tensor::F32(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::I64(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::I32(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::Bool(a) => a.iter().for_each(|&v| out.push(u8::from(v))),
    }
}

/// Decodes `bytes` (exactly the tensor's size) as a tensor of `dtype` and `shape`.
fn get_tensor(dtype: &str, shape: &[usize], bytes: &[u8]) -> Result<Tensor, String> {
    fn words<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        bytes.chunks_exact(N).map(|c| c.try_into().expect("chunks_exact gives N bytes"))
    }
    let bad = |e: ndarray::ShapeError| format!("tensor of shape {shape:?}: {e}");
    let dim = ndarray::IxDyn(shape);
    Ok(match dtype {
        "f32" => Tensor::F32(
            ndarray::ArrayD::from_shape_vec(dim, words(bytes).map(f32::from_le_bytes).collect()).map_err(bad)?,
        ),
        "i64" => Tensor::I64(
            ndarray::ArrayD::from_shape_vec(dim, words(bytes).map(i64::from_le_bytes).collect()).map_err(bad)?,
        ),
        "i32" => Tensor::I32(
            ndarray::ArrayD::from_shape_vec(dim, words(bytes).map(i32::from_le_bytes).collect()).map_err(bad)?,
        ),
        "bool" => {
            if let Some(b) = bytes.iter().find(|&&b| b > 1) {
                return Err(format!("a bool tensor holds the byte {b}"));
            }
            Tensor::Bool(ndarray::ArrayD::from_shape_vec(dim, bytes.iter().map(|&b| b == 1).collect()).map_err(bad)?)
        }
        other => return Err(format!("unknown element type \"{other}\"")),
    })
}

fn describe_type(dtype: impl std::fmt::Display, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("{dtype}[{}]", dims.join(","))
}

impl Checkpoint {
    /// The file's bytes, as laid out in the [module documentation](self).
    pub fn to_bytes(&self) -> Vec<u8> {
        let record = |role: &str, (name, t): &(String, Tensor)| TensorRecord {
            name: name.clone(),
            role: role.to_string(),
            dtype: dtype_name(t.dtype()).to_string(),
            shape: t.shape().to_vec(),
        };
        let p = &self.progress;
        let header = Header {
            writer: format!("nnc-train {}", env!("CARGO_PKG_VERSION")),
            backend: self.backend.clone(),
            model: self.identity.model.clone(),
            settings: self.identity.settings.clone(),
            progress: ProgressRecord {
                step: p.step,
                epoch: p.epoch,
                epoch_steps: p.epoch_steps,
                rng_word_pos: p.rng_word_pos.to_string(),
                skipped: p.skipped,
                consecutive_skips: p.consecutive_skips,
                examples: p.examples,
                train_time: p.train_time,
                eval_time: p.eval_time,
                epoch_time: p.epoch_time,
                epoch_losses_from: p.epoch_losses_from,
                epoch_correct: p.epoch_correct,
                epoch_scored: p.epoch_scored,
            },
            epochs: self
                .epochs
                .iter()
                .map(|e| EpochRecord {
                    epoch: e.epoch,
                    steps: e.steps,
                    complete: e.complete,
                    train: (&e.train).into(),
                    test: e.test.as_ref().map(Into::into),
                    time: e.time,
                })
                .collect(),
            tensors: self
                .params
                .iter()
                .map(|t| record("param", t))
                .chain(self.state.iter().map(|t| record("state", t)))
                .collect(),
            losses: self.losses.len(),
        };
        let header = serde_json::to_vec(&header).expect("the header serializes (string keys, no maps)");
        let payload: usize =
            self.params.iter().chain(&self.state).map(|(_, t)| t.size_bytes()).sum::<usize>() + 4 * self.losses.len();
        let mut out = Vec::with_capacity(PREFIX + header.len() + payload + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&u32::try_from(header.len()).expect("the header is far below 4 GiB").to_le_bytes());
        out.extend_from_slice(&header);
        for (_, t) in self.params.iter().chain(&self.state) {
            put_tensor(&mut out, t);
        }
        self.losses.iter().for_each(|l| out.extend_from_slice(&l.to_le_bytes()));
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a checkpoint file's bytes. The error says what is wrong: not a
    /// checkpoint, another format version, truncated, corrupt.
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, String> {
        let len = bytes.len();
        if len < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(if len < MAGIC.len() && MAGIC.starts_with(bytes) {
                format!("truncated: {len} bytes, shorter than a checkpoint's first line")
            } else {
                "not an nnc checkpoint (the file does not start with NNCCKPT)".to_string()
            });
        }
        if len < PREFIX + 4 {
            return Err(format!("truncated: {len} bytes, shorter than an empty checkpoint"));
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let version = word(8);
        if version != FORMAT_VERSION {
            return Err(format!("format version {version}; this nnc reads version {FORMAT_VERSION}"));
        }
        let crc_ok = || crc32fast::hash(&bytes[..len - 4]) == word(len - 4);
        let corrupt = "corrupt: its checksum does not match its contents (the file was damaged or modified)";
        let header_len = word(12) as usize;
        if header_len > MAX_HEADER {
            return Err(if crc_ok() { format!("corrupt: a header of {header_len} bytes") } else { corrupt.into() });
        }
        if PREFIX + header_len + 4 > len {
            return Err(format!(
                "truncated: {len} bytes, but its header alone is {header_len} bytes (an interrupted copy?)"
            ));
        }
        let header: Header = match serde_json::from_slice(&bytes[PREFIX..PREFIX + header_len]) {
            Ok(h) => h,
            Err(_) if !crc_ok() => return Err(corrupt.into()),
            Err(e) => return Err(format!("corrupt header: {e}")),
        };
        // The sizes the header declares, checked for overflow: the file may be hostile.
        let mut sizes = Vec::with_capacity(header.tensors.len());
        let mut payload = 0usize;
        for t in &header.tensors {
            let size = element_size(&t.dtype)
                .and_then(|s| t.shape.iter().try_fold(s, |acc, &d| acc.checked_mul(d)))
                .ok_or_else(|| {
                    format!("corrupt header: tensor \"{}\" has an unusable type {}{:?}", t.name, t.dtype, t.shape)
                })?;
            sizes.push(size);
            payload = payload.checked_add(size).ok_or("corrupt header: tensors too large")?;
        }
        let expected = header
            .losses
            .checked_mul(4)
            .and_then(|l| payload.checked_add(l))
            .and_then(|p| p.checked_add(PREFIX + header_len + 4))
            .ok_or("corrupt header: sizes overflow")?;
        if len < expected {
            return Err(format!("truncated: {len} of its {expected} bytes (an interrupted copy?)"));
        }
        if len > expected {
            return Err(format!("corrupt: {} bytes of trailing data after its {expected} bytes", len - expected));
        }
        if !crc_ok() {
            return Err(corrupt.into());
        }

        let mut at = PREFIX + header_len;
        let (mut params, mut state) = (Vec::new(), Vec::new());
        for (t, size) in header.tensors.iter().zip(sizes) {
            let tensor = get_tensor(&t.dtype, &t.shape, &bytes[at..at + size])?;
            at += size;
            match t.role.as_str() {
                "param" => params.push((t.name.clone(), tensor)),
                "state" => state.push((t.name.clone(), tensor)),
                other => return Err(format!("corrupt header: tensor \"{}\" has the role \"{other}\"", t.name)),
            }
        }
        let losses =
            bytes[at..len - 4].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        let p = header.progress;
        let rng_word_pos = p
            .rng_word_pos
            .parse()
            .map_err(|_| format!("corrupt header: RNG position \"{}\" is not a number", p.rng_word_pos))?;
        Ok(Checkpoint {
            identity: RunIdentity { model: header.model, settings: header.settings },
            backend: header.backend,
            progress: Progress {
                step: p.step,
                epoch: p.epoch,
                epoch_steps: p.epoch_steps,
                rng_word_pos,
                skipped: p.skipped,
                consecutive_skips: p.consecutive_skips,
                examples: p.examples,
                train_time: p.train_time,
                eval_time: p.eval_time,
                epoch_time: p.epoch_time,
                epoch_losses_from: p.epoch_losses_from,
                epoch_correct: p.epoch_correct,
                epoch_scored: p.epoch_scored,
            },
            epochs: header
                .epochs
                .iter()
                .map(|e| EpochReport {
                    epoch: e.epoch,
                    steps: e.steps,
                    complete: e.complete,
                    train: (&e.train).into(),
                    test: e.test.as_ref().map(Into::into),
                    time: e.time,
                })
                .collect(),
            params,
            state,
            losses,
        })
    }

    /// Reads a checkpoint file.
    pub fn read_file(path: &Path) -> Result<Checkpoint, TrainError> {
        let bytes = std::fs::read(path).map_err(|source| TrainError::Io { path: path.to_path_buf(), source })?;
        Checkpoint::from_bytes(&bytes).map_err(|message| TrainError::Checkpoint { path: path.to_path_buf(), message })
    }

    /// Reads the checkpoint in directory `dir`.
    pub fn load(dir: &Path) -> Result<Checkpoint, TrainError> {
        let path = dir.join(CHECKPOINT_FILE);
        if !dir.is_dir() {
            let message = if dir.exists() { "not a directory" } else { "no such directory" };
            return Err(TrainError::Checkpoint { path: dir.to_path_buf(), message: message.into() });
        }
        if !path.exists() {
            return Err(TrainError::Checkpoint {
                path: dir.to_path_buf(),
                message: format!("holds no checkpoint (no {CHECKPOINT_FILE})"),
            });
        }
        Checkpoint::read_file(&path)
    }

    /// Errors, naming the first difference, unless this checkpoint can continue a run
    /// with `identity` on `backend` planned as `plan`. Checks the settings, then the
    /// parameter and state names and types, then the model graph, then that the
    /// checkpoint is not past the end of the run and is consistent with it.
    pub fn check_resumable<B: StepBackend + ?Sized>(
        &self,
        identity: &RunIdentity,
        backend: &B,
        plan: &Plan,
    ) -> Result<(), String> {
        let recorded: HashMap<&str, &str> =
            self.identity.settings.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        for (name, value) in &identity.settings {
            match recorded.get(name.as_str()) {
                None => return Err(format!("it does not record its {name}")),
                Some(old) if old != value => {
                    return Err(format!("it was made with {name} {old}, and this run has {name} {value}"))
                }
                Some(_) => {}
            }
        }
        check_leaves("parameter", &self.params, &backend.params())?;
        check_leaves("optimizer state", &self.state, &backend.state())?;
        if self.identity.model != identity.model {
            return Err(format!(
                "it was made for another model: the parameters match, but the graph differs (fingerprint {}, this \
                 model's is {})",
                self.identity.model, identity.model
            ));
        }
        let p = &self.progress;
        if p.step > plan.total_steps {
            return Err(format!(
                "it is at step {}, past the end of this run ({} steps; the length counts from the start of the \
                 original run)",
                p.step, plan.total_steps
            ));
        }
        let consistent = p.epoch >= 1
            && p.epoch_steps < plan.steps_per_epoch
            && (p.epoch as u64 - 1).checked_mul(plan.steps_per_epoch).and_then(|s| s.checked_add(p.epoch_steps))
                == Some(p.step)
            && self.epochs.len() == p.epoch - 1
            && self.losses.len() as u64 <= p.step
            && p.epoch_losses_from <= self.losses.len()
            && p.skipped <= p.step;
        if !consistent {
            return Err(format!(
                "its progress record (step {}, epoch {}, {} steps into it, {} losses, {} epochs) does not fit this \
                 run's {} steps per epoch",
                p.step,
                p.epoch,
                p.epoch_steps,
                self.losses.len(),
                self.epochs.len(),
                plan.steps_per_epoch
            ));
        }
        Ok(())
    }
}

/// The checkpoint's tensors `saved` have exactly the names and types of `current`.
fn check_leaves(kind: &str, saved: &[(String, Tensor)], current: &[(String, Tensor)]) -> Result<(), String> {
    let saved_by_name: HashMap<&str, &Tensor> = saved.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for (name, t) in current {
        let Some(s) = saved_by_name.get(name.as_str()) else {
            return Err(format!("it has no {kind} \"{name}\" (it was made for another model or optimizer)"));
        };
        if s.dtype() != t.dtype() || s.shape() != t.shape() {
            return Err(format!(
                "its {kind} \"{name}\" is {}, and this model's is {} (it was made for another model)",
                describe_type(s.dtype(), s.shape()),
                describe_type(t.dtype(), t.shape())
            ));
        }
    }
    let current_names: std::collections::HashSet<&str> = current.iter().map(|(n, _)| n.as_str()).collect();
    if let Some((name, _)) = saved.iter().find(|(n, _)| !current_names.contains(n.as_str())) {
        return Err(format!("it has a {kind} \"{name}\" that this run does not (it was made for another model)"));
    }
    Ok(())
}

/// A directory checkpoints are written into, locked for this process while the
/// value lives (the lock is the operating system's, released even on `kill -9`).
#[derive(Debug)]
pub struct CheckpointDir {
    dir: PathBuf,
    _lock: File,
}

impl CheckpointDir {
    /// Creates `dir` if needed and locks it. Refuses a directory another process is
    /// writing into, and — unless `continuing` (the run resumes from this very
    /// directory) — one that already holds a checkpoint, which a fresh run would
    /// overwrite. Removes the temporary file a killed writer may have left. Writes no
    /// checkpoint.
    pub fn open(dir: &Path, continuing: bool) -> Result<CheckpointDir, TrainError> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(write_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(TrainError::Checkpoint {
                    path: dir.to_path_buf(),
                    message: "another process is writing checkpoints into this directory".into(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(write_err(&lock_path)(e)),
        }
        let file = dir.join(CHECKPOINT_FILE);
        if !continuing && file.exists() {
            let at = Checkpoint::read_file(&file).map(|c| format!(" (step {})", c.progress.step)).unwrap_or_default();
            return Err(TrainError::Checkpoint {
                path: dir.to_path_buf(),
                message: format!(
                    "already holds a checkpoint{at}; continue that run with --resume, or write checkpoints into \
                     another directory"
                ),
            });
        }
        // The lock is ours: no other writer's temporary file can be in the directory.
        for tmp in leftover_temporaries(&file).map_err(write_err(dir))? {
            std::fs::remove_file(&tmp).map_err(write_err(&tmp))?;
        }
        Ok(CheckpointDir { dir: dir.to_path_buf(), _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint file's path.
    pub fn file(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    /// Replaces the directory's checkpoint with `checkpoint`, atomically and durably.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<(), TrainError> {
        let path = self.file();
        let bytes = checkpoint.to_bytes();
        write_atomically(&path, |f| f.write_all(&bytes)).map_err(|source| TrainError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            identity: RunIdentity {
                model: "0123456789abcdef".into(),
                settings: vec![("optimizer".into(), "adam".into()), ("learning rate".into(), "0.001".into())],
            },
            backend: "jit".into(),
            progress: Progress {
                step: 7,
                epoch: 2,
                epoch_steps: 3,
                rng_word_pos: (1u128 << 70) + 5,
                skipped: 1,
                consecutive_skips: 0,
                examples: 96,
                train_time: Duration::from_nanos(123_456_789),
                eval_time: Duration::from_millis(5),
                epoch_time: Duration::from_micros(77),
                epoch_losses_from: 3,
                epoch_correct: 20,
                epoch_scored: 48,
            },
            epochs: vec![EpochReport {
                epoch: 1,
                steps: 4,
                complete: true,
                train: Metrics { loss: 0.1 + 0.2, accuracy: Some(f32::NAN), examples: 64 },
                test: Some(Metrics { loss: f32::INFINITY, accuracy: None, examples: 10 }),
                time: Duration::from_millis(3),
            }],
            params: vec![
                ("w".into(), Tensor::from_f32(&[2, 3], vec![1.0, -0.0, f32::MIN_POSITIVE, 3.5, -1e30, 6.0]).unwrap()),
                ("b".into(), Tensor::from_f32(&[3], vec![0.25; 3]).unwrap()),
                ("n".into(), Tensor::from_i64(&[2], vec![-1, i64::MAX]).unwrap()),
            ],
            state: vec![("w.m".into(), Tensor::from_f32(&[2, 3], vec![1e-30; 6]).unwrap())],
            losses: vec![2.3, 2.1, 1.9, 1.7, 1.6, 1.5],
        }
    }

    /// Bit-level equality (NaN == NaN), which `PartialEq` on f32 is not.
    fn same(a: &Checkpoint, b: &Checkpoint) -> bool {
        format!("{a:?}") == format!("{b:?}") && a.to_bytes() == b.to_bytes()
    }

    #[test]
    fn round_trips_bit_for_bit() {
        let c = sample();
        let bytes = c.to_bytes();
        let back = Checkpoint::from_bytes(&bytes).unwrap();
        assert!(same(&c, &back), "{c:?}\n{back:?}");
        assert_eq!(
            back.params[0].1.as_f32().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()[1],
            (-0.0f32).to_bits()
        );
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            let e = Checkpoint::from_bytes(&bytes[..len]).unwrap_err();
            assert!(e.contains("truncated") || e.contains("corrupt"), "{len}: {e}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            let e = Checkpoint::from_bytes(&b).unwrap_err();
            assert!(
                e.contains("corrupt") || e.contains("truncated") || e.contains("not an nnc") || e.contains("version"),
                "byte {i}: {e}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Checkpoint::from_bytes(&longer).unwrap_err().contains("corrupt"));
        assert!(Checkpoint::from_bytes(b"PK\x03\x04 a zip file").unwrap_err().contains("not an nnc checkpoint"));
    }

    #[test]
    fn the_directory_is_locked_and_an_existing_checkpoint_is_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ckpt");
        let c = sample();
        {
            let w = CheckpointDir::open(&dir, false).unwrap();
            let e = CheckpointDir::open(&dir, true).unwrap_err().to_string();
            assert!(e.contains("another process"), "{e}");
            w.write(&c).unwrap();
            assert!(leftover_temporaries(&w.file()).unwrap().is_empty());
        }
        let e = CheckpointDir::open(&dir, false).unwrap_err().to_string();
        assert!(e.contains("already holds a checkpoint (step 7)"), "{e}");
        std::fs::write(dir.join(".checkpoint.nnc.4321.0.tmp"), b"half a file").unwrap();
        let w = CheckpointDir::open(&dir, true).unwrap();
        assert!(leftover_temporaries(&w.file()).unwrap().is_empty(), "a crashed writer's temporary file is removed");
        assert!(same(&Checkpoint::load(w.dir()).unwrap(), &c));
        let e = Checkpoint::load(&tmp.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("no such directory"), "{e}");
        let e = Checkpoint::load(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("holds no checkpoint"), "{e}");
    }

    #[test]
    fn rng_word_position_reproduces_the_stream() {
        use rand::RngCore;
        let mut a = crate::shuffle_rng(9);
        for _ in 0..37 {
            a.next_u32();
        }
        a.next_u64();
        let pos = a.get_word_pos();
        let mut b = crate::shuffle_rng(9);
        b.set_word_pos(pos);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }
}
