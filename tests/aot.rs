//! Ahead-of-time output end to end: `nnc compile --train -o mlp.o --header mlp.h`,
//! a C program compiled and linked against the object with the system C compiler, and
//! its results compared with nnc's JIT running the same steps in this process.
//!
//! The comparison is bitwise: the object contains the kernels the JIT runs (only the
//! addressing differs, position-independent code), and the seed step's only
//! transcendental functions are nnc's `exp`, generated inline in both, and `logf`,
//! libm's in both (Rust's `f32::ln` calls the C library's).

use nnc_autodiff::{training_graph, TrainOptions, LABELS, LR};
use nnc_ir::Tensor;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const BATCH: usize = 37;
const STEPS: usize = 3;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).to_string_lossy().to_string()
}

fn nnc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nnc")).args(args).output().expect("nnc runs")
}

/// The C program: initialize the state from the embedded weights, run `STEPS`
/// training steps on consecutive batches, then inference on the first batch; write
/// the losses, the logits and the whole state block.
const MAIN_C: &str = r#"
#include "mlp.h"
#include <stdio.h>
#include <stdlib.h>

static void *slurp(const char *path, size_t bytes) {
    FILE *f = fopen(path, "rb");
    void *p = malloc(bytes);
    if (!f || !p || fread(p, 1, bytes, f) != bytes) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    fclose(f);
    return p;
}

static void spill(const char *path, const void *p, size_t bytes) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
    fclose(f);
}

#define ROUND64(n) (((n) + 63) / 64 * 64)

int main(void) {
    void *state = aligned_alloc(64, ROUND64(MLP_STATE_BYTES));
    void *arena = aligned_alloc(64, ROUND64(MLP_ARENA_BYTES));
    float *x = slurp("x.bin", sizeof(float) * STEPS * MLP_TRAIN_STEP_INPUT_ELEMENTS(BATCH));
    int64_t *y = slurp("y.bin", sizeof(int64_t) * STEPS * BATCH);
    float lr = 0.01f, losses[STEPS], logits[MLP_INFER_OUT0_ELEMENTS(BATCH)];
    mlp_init(state);
    for (int s = 0; s < STEPS; s++) {
        int32_t rc = mlp_train_step(state, arena, x + s * BATCH * 784, y + s * BATCH, &lr, &losses[s], BATCH);
        if (rc != 0) { fprintf(stderr, "train_step returned %d\n", rc); return 1; }
    }
    if (mlp_infer(state, arena, x, logits, BATCH) != 0) return 1;
    /* A batch over the limit is refused, and a bad label is reported. */
    if (mlp_infer(state, arena, x, logits, MLP_MAX_BATCH + 1) != -1) return 3;
    y[0] = 10;
    if (mlp_train_step(state, arena, x, y, &lr, &losses[0], BATCH) <= 0) return 4;
    spill("losses.bin", losses, sizeof losses);
    spill("logits.bin", logits, sizeof logits);
    return 0;
}
"#;

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn c_program_trains_and_infers_like_the_jit() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if Command::new(&cc).arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "no C compiler ({cc}) in CI: .ci/run installs one");
        eprintln!("skipped: no C compiler ({cc})");
        return;
    }
    // The kernels this CPU picks, and the portable ones (an object for any x86-64 CPU);
    // the JIT below uses `auto`: the families give the same bits. The seed MLP and
    // LeNet-5, whose [N, 1, 28, 28] input is as many floats per example.
    let models: [(&str, &[usize]); 2] =
        [("models/mlp.onnx", &[784]), ("tests/fixtures/cnn/lenet5.ts.onnx", &[1, 28, 28])];
    for ((model_path, dims), kernels) in models.iter().flat_map(|m| ["auto", "cranelift"].map(|k| (*m, k))) {
        let shape = |batch: usize| -> Vec<usize> { std::iter::once(batch).chain(dims.iter().copied()).collect() };
        let dir = tempfile::tempdir().unwrap();
        let d = |f: &str| dir.path().join(f).to_string_lossy().to_string();
        let o = nnc(&[
            "compile",
            &repo(model_path),
            "--train",
            "-o",
            &d("mlp.o"),
            "--header",
            &d("mlp.h"),
            "--prefix",
            "mlp",
            "--embed-weights",
            "--max-batch",
            "64",
            "--kernels",
            kernels,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let header = std::fs::read_to_string(d("mlp.h")).unwrap();
        // The interface the C program is written against.
        for decl in [
            "int32_t mlp_train_step(void *state, void *arena, const float *input, const int64_t *labels, const float *lr, float *out0, int64_t batch);",
            "int32_t mlp_infer(void *state, void *arena, const float *input, float *out0, int64_t batch);",
            "void mlp_init(void *state);",
            "#define MLP_MAX_BATCH 64",
            if kernels == "cranelift" { "#define MLP_KERNELS \"cranelift-f32x4\"" } else { "#define MLP_KERNELS \"" },
            "#define MLP_INFER_INPUT_ELEMENTS(batch) ((size_t)(batch) * 784)",
            "#define MLP_TRAIN_STEP_OUT0_ELEMENTS(batch) (1)",
        ] {
            assert!(header.contains(decl), "the header lacks {decl}:\n{header}");
        }

        // Data: STEPS batches.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let x: Vec<f32> = (0..STEPS * BATCH * 784).map(|_| rng.random::<f32>()).collect();
        let y: Vec<i64> = (0..STEPS * BATCH).map(|_| rng.random_range(0..10)).collect();
        std::fs::write(d("x.bin"), x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        std::fs::write(d("y.bin"), y.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        std::fs::write(d("main.c"), MAIN_C).unwrap();

        let build = Command::new(&cc)
            .current_dir(dir.path())
            .args(["-std=c11", "-O1", "-Wall", "-Werror", &format!("-DSTEPS={STEPS}"), &format!("-DBATCH={BATCH}")])
            .args(["main.c", "mlp.o", "-lm", "-o", "main"])
            .output()
            .unwrap();
        assert!(build.status.success(), "cc failed:\n{}", String::from_utf8_lossy(&build.stderr));
        let run = Command::new(dir.path().join("main")).current_dir(dir.path()).output().unwrap();
        assert!(
            run.status.success(),
            "the C program failed ({:?}):\n{}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
        let read_f32 = |f: &str| -> Vec<u32> {
            std::fs::read(d(f)).unwrap().chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
        };

        // The same steps on the JIT.
        let model = nnc_onnx::import_file(Path::new(&repo(model_path))).unwrap();
        let step = training_graph(&model, &TrainOptions::default()).unwrap().graph;
        let mut jit = nnc_pipeline::compile(&step, &Default::default(), &Default::default()).unwrap();
        let mut losses = Vec::new();
        for s in 0..STEPS {
            let xs = Tensor::from_f32(&shape(BATCH), x[s * BATCH * 784..(s + 1) * BATCH * 784].to_vec()).unwrap();
            let ys = Tensor::from_i64(&[BATCH], y[s * BATCH..(s + 1) * BATCH].to_vec()).unwrap();
            let feeds = HashMap::from([
                ("input".to_string(), xs),
                (LABELS.to_string(), ys),
                (LR.to_string(), Tensor::scalar_f32(0.01)),
            ]);
            losses.extend(bits(&jit.run(&feeds).unwrap()[0]));
        }
        assert_eq!(read_f32("losses.bin"), losses, "{model_path}: losses differ from the JIT's");

        let mut infer = nnc_pipeline::compile(&model, &Default::default(), &Default::default()).unwrap();
        for name in infer.param_names() {
            infer.set_param(&name, &jit.param(&name).unwrap()).unwrap();
        }
        let x0 = Tensor::from_f32(&shape(BATCH), x[..BATCH * 784].to_vec()).unwrap();
        let logits = infer.run(&HashMap::from([("input".to_string(), x0)])).unwrap();
        assert_eq!(
            read_f32("logits.bin"),
            bits(&logits[0]),
            "{model_path}: logits after training differ from the JIT's"
        );
    }
}

#[test]
fn bad_output_paths_are_refused_before_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "keep").unwrap();
    for out in [dir.path().join("missing/mlp.o"), file.join("mlp.o")] {
        let o = nnc(&["compile", &repo("models/mlp.onnx"), "-o", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cannot write the object file") && err.lines().count() == 1, "{err}");
        assert!(!out.exists());
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    let o = nnc(&["compile", &repo("models/mlp.onnx"), "-o", file.to_str().unwrap(), "--prefix", "1bad"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a C identifier"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep", "a failed compile must not touch the output");
}
