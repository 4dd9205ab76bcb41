//! Data handling: IDX files (valid and every kind of corrupt), MNIST directories,
//! data set validation and fitting, and seeded batching.

use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::{ArrayD, IxDyn};
use nnc_ir::{Dim, Tensor, TensorType};
use nnc_train::idx::{encode_idx, read_idx, write_idx, Idx};
use nnc_train::{
    fit_to_input, fit_to_model, load_mnist_dir, shuffle_rng, Batches, Dataset, Examples, Labels, TrainError,
};
use std::io::Write;
use std::path::{Path, PathBuf};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// An IDX header written by hand, independently of `encode_idx`.
fn header(ty: u8, dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, ty, dims.len() as u8];
    for d in dims {
        h.extend_from_slice(&d.to_be_bytes());
    }
    h
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The error message for reading `bytes` as a raw file and, gzip-compressed, as a `.gz` file.
fn both_errors(bytes: &[u8]) -> [String; 2] {
    let dir = tempfile::tempdir().unwrap();
    let raw = write(dir.path(), "x-idx3-ubyte", bytes);
    let gz = write(dir.path(), "x-idx3-ubyte.gz", &gzip(bytes));
    [raw, gz].map(|p| {
        let e = read_idx(&p).expect_err("corrupt file must be refused");
        assert!(matches!(e, TrainError::Idx { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with(&p.display().to_string()), "error must name the file: {msg}");
        msg
    })
}

#[test]
fn idx_round_trip_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 11) as u8).collect();
    let mut by_hand = header(0x08, &[2, 3, 4]);
    by_hand.extend_from_slice(&data);
    assert_eq!(encode_idx(&[2, 3, 4], &data).unwrap(), by_hand);
    for name in ["a-idx3-ubyte", "a-idx3-ubyte.gz"] {
        let path = dir.path().join(name);
        write_idx(&path, &[2, 3, 4], &data).unwrap();
        assert_eq!(read_idx(&path).unwrap(), Idx { dims: vec![2, 3, 4], data: data.clone() });
    }
    // gzip is recognized by content, whatever the name.
    let path = write(dir.path(), "plain-name", &gzip(&by_hand));
    assert_eq!(read_idx(&path).unwrap().dims, [2, 3, 4]);
    // 1-D (labels) and a zero-size dimension.
    let path = dir.path().join("l.gz");
    write_idx(&path, &[5], &[1, 2, 3, 4, 5]).unwrap();
    assert_eq!(read_idx(&path).unwrap(), Idx { dims: vec![5], data: vec![1, 2, 3, 4, 5] });
    write_idx(&path, &[0, 28, 28], &[]).unwrap();
    assert_eq!(read_idx(&path).unwrap().data.len(), 0);
}

#[test]
fn idx_corrupt_files_are_clear_errors() {
    let mut good = header(0x08, &[2, 2]);
    good.extend_from_slice(&[1, 2, 3, 4]);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "file ends inside the 4-byte magic number"),
        ("short magic", vec![0, 0], "truncated"),
        ("wrong magic", b"P5\n28 28".to_vec(), "not an IDX file: it starts with bytes 50 35 0a 32"),
        ("f32 elements", [header(0x0d, &[1]), vec![0; 4]].concat(), "element type 0x0d (f32) is not supported"),
        ("unknown type", [header(0x42, &[1]), vec![0]].concat(), "0x42 (not an IDX type)"),
        ("no dims", header(0x08, &[]), "declares 0 dimensions"),
        ("header cut", good[..9].to_vec(), "ends inside the header (dimension 2 of 2)"),
        ("data cut", good[..good.len() - 1].to_vec(), "truncated: dims 2×2 declare 4 bytes of data, but"),
        ("trailing", [good.clone(), vec![9]].concat(), "trailing data: dims 2×2 declare 4 bytes"),
        ("overflow", header(0x08, &[u32::MAX, u32::MAX, u32::MAX]), "declare more than"),
        // 4 GiB declared in a tiny file: refused before any allocation of that size.
        ("huge", [header(0x08, &[65536, 32767]), vec![0; 8]].concat(), "truncated"),
    ];
    for (what, bytes, want) in cases {
        for msg in both_errors(&bytes) {
            assert!(msg.contains(want), "{what}: {msg:?} lacks {want:?}");
        }
    }
}

#[test]
fn idx_corrupt_gzip_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut good = header(0x08, &[100]);
    good.extend((0..100).map(|i| i as u8));
    let gz = gzip(&good);

    // Cut inside the compressed data, and cut off just the CRC/length trailer.
    for cut in [gz.len() / 2, gz.len() - 4] {
        let path = write(dir.path(), "cut.gz", &gz[..cut]);
        let msg = read_idx(&path).unwrap_err().to_string();
        assert!(msg.contains("truncated") || msg.contains("corrupt"), "cut at {cut}: {msg}");
    }
    // A flipped bit in the deflate data or the CRC.
    for at in [12, gz.len() - 6] {
        let mut bad = gz.clone();
        bad[at] ^= 0x55;
        let path = write(dir.path(), "flip.gz", &bad);
        let e = read_idx(&path).unwrap_err();
        assert!(matches!(e, TrainError::Idx { .. }), "flip at {at}: {e:?}");
    }
    // Declares far more than a file this small can decompress to: refused up front.
    let path = write(dir.path(), "bomb.gz", &gzip(&header(0x08, &[60000, 28, 28])));
    let msg = read_idx(&path).unwrap_err().to_string();
    assert!(msg.contains("more than a") && msg.contains("gzip file can hold"), "{msg}");

    let missing = dir.path().join("nope");
    assert!(matches!(read_idx(&missing).unwrap_err(), TrainError::Io { .. }));
}

/// Writes a 4-file MNIST-format directory: `n` train and `m` test images of `r`×`c`.
fn mnist_dir(dir: &Path, n: usize, m: usize, gz: bool) {
    let ext = if gz { ".gz" } else { "" };
    for (split, count) in [("train", n), ("t10k", m)] {
        let pixels: Vec<u8> = (0..count * 6).map(|i| (i * 37 % 256) as u8).collect();
        let labels: Vec<u8> = (0..count).map(|i| (i % 3) as u8).collect();
        write_idx(&dir.join(format!("{split}-images-idx3-ubyte{ext}")), &[count, 2, 3], &pixels).unwrap();
        write_idx(&dir.join(format!("{split}-labels-idx1-ubyte{ext}")), &[count], &labels).unwrap();
    }
}

#[test]
fn mnist_directory_loads_scaled_and_reports_missing_files() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        mnist_dir(dir.path(), 5, 4, gz);
        let (train, test) = load_mnist_dir(dir.path()).unwrap();
        assert_eq!((train.len(), test.len()), (5, 4));
        assert_eq!(train.example_shape(), [2, 3]);
        // Held as the files' bytes, converted only as batches are gathered.
        assert!(matches!(train.inputs(), Examples::Bytes { divisor, .. } if *divisor == 255.0));
        assert_eq!(train.inputs().memory_bytes(), 5 * 6);
        let x = train.inputs().to_tensor();
        let x = x.as_f32().unwrap();
        assert_eq!(x[[0, 0, 1]], 37.0 / 255.0);
        assert!(x.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert_eq!(train.labels().as_i64().unwrap().as_slice().unwrap(), [0, 1, 2, 0, 1]);
    }

    let dir = tempfile::tempdir().unwrap();
    mnist_dir(dir.path(), 3, 3, true);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let msg = load_mnist_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("missing t10k-labels-idx1-ubyte[.gz]"), "{msg}");
    assert!(msg.contains("train-images-idx3-ubyte, train-labels-idx1-ubyte"), "{msg}");

    let msg = load_mnist_dir(&dir.path().join("absent")).unwrap_err().to_string();
    assert!(msg.contains("no such directory") && msg.contains("NNC_DATA"), "{msg}");

    // Image and label counts disagree.
    let dir = tempfile::tempdir().unwrap();
    mnist_dir(dir.path(), 3, 3, false);
    write_idx(&dir.path().join("train-labels-idx1-ubyte"), &[2], &[0, 1]).unwrap();
    let msg = load_mnist_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("has 2 labels, but") && msg.contains("has 3 images"), "{msg}");
}

fn f32s(shape: &[usize], f: impl Fn(usize) -> f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(shape, (0..n).map(f).collect()).unwrap()
}

#[test]
fn dataset_validation() {
    let x = f32s(&[4, 6], |i| i as f32);
    // i32 labels become i64; a [n, 1] column is flattened.
    let y32 = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[4, 1]), vec![0, 1, 2, 1]).unwrap());
    let ds = Dataset::new(x.clone(), y32).unwrap();
    assert_eq!(ds.labels(), &Tensor::from_i64(&[4], vec![0, 1, 2, 1]).unwrap());

    let e = Dataset::new(x.clone(), Tensor::from_i64(&[3], vec![0, 1, 2]).unwrap()).unwrap_err();
    assert!(matches!(e, TrainError::LabelCount { examples: 4, labels: 3 }), "{e}");

    let mut bad = vec![0.0f32; 24];
    bad[2 * 6 + 5] = f32::NAN;
    let e = Dataset::new(Tensor::from_f32(&[4, 6], bad).unwrap(), ds.labels().clone()).unwrap_err();
    assert!(matches!(e, TrainError::NonFinite { index: 2, element: 5, .. }), "{e}");
    assert!(e.to_string().contains("example 2 contain NaN"), "{e}");

    let e = Dataset::new(Tensor::from_i64(&[4], vec![0; 4]).unwrap(), ds.labels().clone()).unwrap_err();
    assert!(e.to_string().contains("inputs must be f32"), "{e}");

    // Label range: the first offending example and value are named.
    let ds = Dataset::new(x.clone(), Tensor::from_i64(&[4], vec![0, 9, -1, 3]).unwrap()).unwrap();
    let e = ds.check_labels(&Labels::Classes(3)).unwrap_err();
    assert!(matches!(e, TrainError::LabelRange { index: 1, value: 9, classes: 3 }), "{e}");
    assert_eq!(e.to_string(), "label 9 of example 1 is outside the model's 3 classes (0..3)");
    let ds = Dataset::new(x.clone(), Tensor::from_i64(&[4], vec![0, 2, -1, 3]).unwrap()).unwrap();
    let e = ds.check_labels(&Labels::Classes(3)).unwrap_err();
    assert!(matches!(e, TrainError::LabelRange { index: 2, value: -1, .. }), "{e}");
    let e = ds.check_labels(&Labels::Targets(vec![1])).unwrap_err();
    assert!(e.to_string().contains("mean squared error"), "{e}");
    assert_eq!(ds.head(2).len(), 2);
    assert_eq!(ds.head(9).len(), 4);
}

#[test]
fn fitting_to_the_model_input() {
    let ds =
        Dataset::new(f32s(&[3, 28, 28], |i| (i % 255) as f32 / 255.0), Tensor::from_i64(&[3], vec![1, 2, 3]).unwrap())
            .unwrap();
    let flat = TensorType::f32(&[Dim::Batch, Dim::Fixed(784)]);
    let image = TensorType::f32(&[Dim::Batch, Dim::Fixed(1), Dim::Fixed(28), Dim::Fixed(28)]);
    let a = fit_to_input(ds.clone(), &flat).unwrap();
    assert_eq!(a.inputs().shape(), [3, 784]);
    let b = fit_to_input(a.clone(), &image).unwrap();
    assert_eq!(b.inputs().shape(), [3, 1, 28, 28]);
    assert_eq!(b.inputs().to_tensor().to_f32_vec(), ds.inputs().to_tensor().to_f32_vec());

    let wrong = TensorType::f32(&[Dim::Batch, Dim::Fixed(100)]);
    let msg = fit_to_input(ds.clone(), &wrong).unwrap_err().to_string();
    assert!(msg.contains("f32[N,100] (100 values per example)") && msg.contains("[28,28] (784 values)"), "{msg}");
    let no_batch = TensorType::f32(&[Dim::Fixed(1), Dim::Fixed(784)]);
    let msg = fit_to_input(ds.clone(), &no_batch).unwrap_err().to_string();
    assert!(msg.contains("batch N as its first dimension"), "{msg}");
    assert!(matches!(
        fit_to_model(ds.clone(), &flat, &Labels::Classes(3)),
        Err(TrainError::LabelRange { index: 2, .. })
    ));

    // Regression targets [n] fit a [N,1] output.
    let reg = Dataset::new(f32s(&[3, 2], |i| i as f32), f32s(&[3], |i| i as f32)).unwrap();
    let two = TensorType::f32(&[Dim::Batch, Dim::Fixed(2)]);
    let fitted = fit_to_model(reg, &two, &Labels::Targets(vec![1])).unwrap();
    assert_eq!(fitted.labels().shape(), [3, 1]);
}

/// All batches of one epoch, as (example indices, x rows' first values).
fn epoch(b: &mut Batches, rng: Option<&mut rand_chacha::ChaCha8Rng>) -> Vec<Vec<usize>> {
    b.start_epoch(rng);
    let mut out = Vec::new();
    while let Some(batch) = b.next_batch() {
        let x = batch.x.as_f32().unwrap();
        let y = batch.y.as_i64().unwrap();
        assert_eq!(x.shape(), [batch.indices.len(), 3]);
        // The gathered rows are the examples named by `indices`.
        for (r, &i) in batch.indices.iter().enumerate() {
            assert_eq!(x[[r, 0]], (i * 3) as f32);
            assert_eq!(y[[r]], i as i64 % 7);
        }
        out.push(batch.indices.to_vec());
    }
    out
}

#[test]
fn batches_are_seeded_permutations_with_the_last_partial_batch() {
    let n = 23;
    let ds = Dataset::new(
        f32s(&[n, 3], |i| i as f32),
        Tensor::from_i64(&[n], (0..n as i64).map(|i| i % 7).collect()).unwrap(),
    )
    .unwrap();
    let mut b = Batches::new(&ds, 5).unwrap();
    assert_eq!(b.per_epoch(), 5);

    let in_order = epoch(&mut b, None);
    assert_eq!(in_order.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 5, 5, 3]);
    assert_eq!(in_order.concat(), (0..n).collect::<Vec<_>>());

    let (mut r1, mut r2, mut r3) = (shuffle_rng(7), shuffle_rng(7), shuffle_rng(8));
    let a1 = epoch(&mut b, Some(&mut r1));
    let a2 = epoch(&mut b, Some(&mut r1));
    assert_eq!(a1, epoch(&mut b, Some(&mut r2)), "same seed, same order");
    assert_eq!(a2, epoch(&mut b, Some(&mut r2)), "same seed, same second epoch");
    assert_ne!(a1, a2, "each epoch is reshuffled");
    assert_ne!(a1, epoch(&mut b, Some(&mut r3)), "another seed, another order");
    for order in [&a1, &a2] {
        assert_eq!(order.last().unwrap().len(), 3, "the partial batch is kept");
        let mut all = order.concat();
        all.sort();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "a permutation");
    }

    let mut big = Batches::new(&ds, 100).unwrap();
    assert_eq!(epoch(&mut big, None).len(), 1);
    assert!(matches!(Batches::new(&ds, 0), Err(TrainError::Config(_))));
}

/// Every byte value, in 40 examples of 32 bytes, and the same examples as f32 made the
/// way the images were converted before they were kept as bytes.
fn byte_and_f32_sets() -> (Dataset, Dataset) {
    let (n, row) = (40, 32);
    let bytes: Vec<u8> = (0..n * row).map(|i| (i * 97 % 256) as u8).collect();
    let labels = Tensor::from_i64(&[n], (0..n as i64).map(|i| i % 10).collect()).unwrap();
    let old_way: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
    let f32s = Dataset::new(Tensor::from_f32(&[n, row], old_way).unwrap(), labels.clone()).unwrap();
    let bytes = Dataset::from_bytes(ArrayD::from_shape_vec(IxDyn(&[n, row]), bytes).unwrap(), 255.0, labels).unwrap();
    (bytes, f32s)
}

fn batch_bits(b: &mut Batches) -> Vec<(Vec<usize>, Vec<u32>, Vec<i64>)> {
    let mut out = Vec::new();
    while let Some(batch) = b.next_batch() {
        let x = batch.x.as_f32().unwrap().iter().map(|v| v.to_bits()).collect();
        let y = batch.y.as_i64().unwrap().iter().copied().collect();
        out.push((batch.indices.to_vec(), x, y));
    }
    out
}

/// A data set held as bytes gives batches bit for bit equal to its f32 values, in
/// shuffled epochs with a partial last batch, and reuses one f32 buffer per batch size.
#[test]
fn byte_data_sets_batch_to_the_same_bits_as_f32() {
    let (bytes, f32s) = byte_and_f32_sets();
    assert_eq!(bytes.inputs().memory_bytes() * 4, f32s.inputs().memory_bytes());
    assert_eq!(bytes.inputs().to_tensor(), f32s.inputs().to_tensor());
    let (mut a, mut b) = (Batches::new(&bytes, 7).unwrap(), Batches::new(&f32s, 7).unwrap());
    let (mut ra, mut rb) = (shuffle_rng(3), shuffle_rng(3));
    for _ in 0..3 {
        a.start_epoch(Some(&mut ra));
        b.start_epoch(Some(&mut rb));
        let (from_bytes, from_f32) = (batch_bits(&mut a), batch_bits(&mut b));
        assert_eq!(from_bytes.len(), 6);
        assert_eq!(from_bytes, from_f32);
    }
    // Gathering allocates only when the batch size changes.
    a.start_epoch(None);
    let first = a.next_batch().unwrap().x.as_f32().unwrap().as_ptr();
    let second = a.next_batch().unwrap().x.as_f32().unwrap().as_ptr();
    assert_eq!(first, second);

    // Taking the first examples and reshaping keep the bytes and their values.
    let flat = TensorType::f32(&[Dim::Batch, Dim::Fixed(32)]);
    let square = TensorType::f32(&[Dim::Batch, Dim::Fixed(4), Dim::Fixed(8)]);
    let head = fit_to_input(bytes.head(5), &square).unwrap();
    assert!(matches!(head.inputs(), Examples::Bytes { .. }));
    assert_eq!(head.inputs().shape(), [5, 4, 8]);
    let f32_head = fit_to_input(f32s.head(5), &square).unwrap();
    assert_eq!(head.inputs().to_tensor(), f32_head.inputs().to_tensor());
    assert_eq!(fit_to_input(head, &flat).unwrap().into_parts(), f32s.head(5).into_parts());
}

/// Checkpoints identify the training set by its f32 values, so a run checkpointed
/// with the images as f32 resumes with them as bytes.
#[test]
fn byte_and_f32_data_sets_have_one_fingerprint() {
    let (bytes, f32s) = byte_and_f32_sets();
    let mut g = nnc_ir::Graph::new("m");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(32)])).unwrap();
    g.set_outputs(vec![x]);
    let (opts, cfg) = (nnc_autodiff::TrainOptions::default(), nnc_train::TrainConfig::default());
    let a = nnc_train::RunIdentity::new(&g, &opts, &cfg, &bytes);
    let b = nnc_train::RunIdentity::new(&g, &opts, &cfg, &f32s);
    assert_eq!(a, b);
    let changed = Dataset::from_bytes(ArrayD::from_elem(IxDyn(&[40, 32]), 1), 255.0, bytes.labels().clone()).unwrap();
    assert_ne!(nnc_train::RunIdentity::new(&g, &opts, &cfg, &changed), a);
}

/// A divisor that makes some byte values infinite or NaN is refused like non-finite
/// f32 data, naming the first such element.
#[test]
fn byte_data_sets_with_non_finite_values_are_refused() {
    let mut bytes = vec![0u8; 12];
    bytes[7] = 3;
    let labels = Tensor::from_i64(&[3], vec![0, 1, 2]).unwrap();
    let x = ArrayD::from_shape_vec(IxDyn(&[3, 4]), bytes).unwrap();
    // 0 / 0 is NaN: the first element.
    let e = Dataset::from_bytes(x.clone(), 0.0, labels.clone()).unwrap_err();
    assert!(matches!(e, TrainError::NonFinite { index: 0, element: 0, .. }), "{e}");
    // 3 / 1e-40 overflows; 0 / 1e-40 is 0.
    let e = Dataset::from_bytes(x.clone(), 1e-40, labels.clone()).unwrap_err();
    assert!(matches!(e, TrainError::NonFinite { index: 1, element: 3, .. }), "{e}");
    assert!(e.to_string().contains("example 1 contain inf at element 3"), "{e}");
    assert!(Dataset::from_bytes(x, 255.0, labels).is_ok());
}
