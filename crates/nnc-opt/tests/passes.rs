//! One filetest per pass: IR text in, IR text out, with cases where the pass must
//! fire and cases where it must not (commented in the input). Each snapshot is the
//! graph after the pass and then `dce`, since passes leave what they replace for
//! `dce` to drop (the `dce` test runs `dce` alone). `run_pass` also checks that the
//! result verifies, round-trips, and computes what the input did.

mod common;

use common::*;
use nnc_autodiff::{training_graph, Loss, Optimizer, TrainOptions};
use nnc_ir::UnaryOp;

fn snap(name: &str, text: &str) -> String {
    run_pass(name, text, name != "dce")
}

#[test]
fn simplify() {
    insta::assert_snapshot!(snap(
        "simplify",
        r#"
graph s {
  %x: f32[N,4] = input
  %s: f32[] = input
  %one: f32[] = const [1.0]
  %zero: f32[] = const [0.0]
  %two: f32[] = const [2.0]
  %zeros4: f32[4] = const [0.0, 0.0, 0.0, 0.0]
  %a: f32[N,4] = mul %x, %one                          ; x*1 -> x
  %b: f32[N,4] = add %zero, %a                         ; 0+x -> x
  %c: f32[N,4] = identity %b                           ; -> x
  %d: f32[N,4] = neg %c
  %e: f32[N,4] = neg %d                                ; neg(neg x) -> x
  %t1: f32[4,N] = transpose[perm=[1,0]] %e
  %t2: f32[N,4] = transpose[perm=[1,0]] %t1            ; cancels -> x
  %r1: f32[N,2,2] = reshape[shape=[N,2,2]] %t2
  %r2: f32[N,4] = reshape[shape=[N,4]] %r1             ; back to x's shape -> x
  %r3: f32[N,4,1] = reshape[shape=[N,4,1]] %r1         ; chain -> one reshape of x
  %u1: f32[2,2,N] = transpose[perm=[1,2,0]] %r1
  %u2: f32[2,N,2] = transpose[perm=[1,2,0]] %u1        ; composes -> one transpose of r1
  %sub0: f32[N,4] = sub %r2, %zero                     ; x-0 -> x
  %div1: f32[N,4] = div %sub0, %one                    ; x/1 -> x
  %cast: f32[N,4] = cast[to=f32] %div1                 ; same type -> x
  %no1: f32[4] = add %s, %zeros4                       ; NOT: broadcasts s to [4]
  %no2: f32[N,4] = mul %cast, %two                     ; NOT: not a one
  %no3: f32[N,4] = sub %zero, %no2                     ; NOT: 0-x is not x
  return %no3, %no1, %r3, %u2
}
"#
    ));
}

#[test]
fn const_fold() {
    insta::assert_snapshot!(snap(
        "const_fold",
        r#"
graph f {
  %x: f32[N,3] = input
  %a: f32[] = const [2.0]
  %b: f32[] = const [3.0]
  %c: f32[] = mul %a, %b                               ; -> const 6
  %d: f32[] = neg %c                                   ; -> const -6 (chains fold)
  %v: f32[3] = broadcast[shape=[3]] %d                 ; -> const, small
  %e: f32[N,3] = mul %x, %v                            ; NOT: reads an input
  %ones: f32[N] = broadcast[shape=[N]] %a              ; NOT: batch-sized
  %big: f32[100,100] = broadcast[shape=[100,100]] %a   ; NOT: 10000 elements
  %s: f32[] = reduce_sum[axes=[0,1]] %big              ; NOT: its operand is not a constant
  %n: f32[] = reduce_sum[axes=[0]] %ones
  return %e, %n, %s
}
"#
    ));
}

#[test]
fn const_fold_leaves_run_time_errors_alone() {
    insta::assert_snapshot!(snap(
        "const_fold",
        r#"
graph f {
  %i: i64[2] = const [1, 5]
  %oh: f32[2,3] = one_hot[depth=3] %i                  ; NOT: class 5 is out of range
  return %oh
}
"#
    ));
}

#[test]
fn cse() {
    insta::assert_snapshot!(snap(
        "cse",
        r#"
graph c {
  %x: f32[N,4] = input
  %w: f32[4,3] = param
  %w2: f32[4,3] = param                                ; NOT: parameters are storage
  %a: f32[N,3] = matmul %x, %w
  %b: f32[N,3] = matmul %x, %w                         ; -> a
  %c: f32[N,3] = matmul %x, %w2                        ; NOT: other operand
  %k1: f32[] = const [1.0]
  %k2: f32[] = const [1.0]                             ; kept (a scalar), but equal to k1 in keys
  %v1: f32[2] = const [1.0, 2.0]
  %v2: f32[2] = const [1.0, 2.0]                       ; -> v1
  %z1: f32[] = const [0.0]
  %z2: f32[] = const [-0.0]                            ; NOT: other bits
  %l1: f32[N,3] = leaky_relu[alpha=0.1] %a
  %l2: f32[N,3] = leaky_relu[alpha=0.2] %b             ; NOT: other attribute
  %l3: f32[N,3] = leaky_relu[alpha=0.1] %b             ; -> l1 (b is a)
  %s1: f32[N,3] = add %l1, %k1
  %s2: f32[N,3] = add %l3, %k2                         ; -> s1, after the merges above
  %s3: f32[N,3] = add %c, %z1
  %s4: f32[N,3] = add %c, %z2
  %t: f32[N,3] = add %c, %k2
  return %s1, %s2, %l2, %s3, %s4, %t, %v1, %v2
}
"#
    ));
}

#[test]
fn dce() {
    insta::assert_snapshot!(snap(
        "dce",
        r#"
graph d {
  %x: f32[N,4] = input
  %unused_input: f32[N,4] = input                      ; kept: interface
  %w: f32[4,3] = param
  %unused_param: f32[3] = param                        ; kept: interface
  %m: f32[4,3] = state
  %h: f32[N,3] = matmul %x, %w
  %dead: f32[N,3] = relu %h                            ; dropped
  %dead_grad: f32[4,3] = matmul[trans_a] %x, %dead     ; dropped: a gradient nobody uses
  %k: f32[] = const [0.5]
  %m_new: f32[4,3] = mul %m, %k                        ; kept: an update needs it
  %loss: f32[] = reduce_sum[axes=[0,1]] %h
  update %m <- %m_new
  return %loss
}
"#
    ));
}

#[test]
fn fold_transpose() {
    insta::assert_snapshot!(snap(
        "fold_transpose",
        r#"
graph t {
  %x: f32[N,4] = input
  %w: f32[3,4] = param
  %b: f32[3] = param
  %w3: f32[2,4,3] = param
  %x3: f32[2,N,4] = input
  %wt: f32[4,3] = transpose[perm=[1,0]] %w
  %y: f32[N,3] = matmul %x, %wt                        ; -> matmul[trans_b] x, w
  %xt: f32[4,N] = transpose[perm=[1,0]] %x
  %g: f32[4,3] = matmul %xt, %y                        ; -> matmul[trans_a] x, y
  %d: f32[N,3] = fused.dense[bias] %x, %wt, %b         ; -> fused.dense[trans_b, bias] x, w, b
  %w3t: f32[2,3,4] = transpose[perm=[0,2,1]] %w3
  %z: f32[2,N,3] = matmul[trans_b] %x3, %w3t           ; batched: -> matmul x3, w3
  %p: f32[4,2,3] = transpose[perm=[1,0,2]] %w3         ; NOT: swaps the leading axes
  %q: f32[2,N,4] = input
  %pt: f32[2,4,3] = transpose[perm=[1,0,2]] %p
  %zz: f32[2,N,3] = matmul %q, %pt                     ; NOT: pt is not a swap of the last two axes
  return %g, %d, %z, %zz, %wt                          ; wt stays: it is an output
}
"#
    ));
}

#[test]
fn fuse_dense() {
    insta::assert_snapshot!(snap(
        "fuse_dense",
        r#"
graph dense {
  %x: f32[N,4] = input
  %w1: f32[4,3] = param
  %b1: f32[3] = param
  %m1: f32[N,3] = matmul %x, %w1
  %a1: f32[N,3] = add %m1, %b1
  %h1: f32[N,3] = relu %a1                             ; -> fused.dense[bias, act=relu]
  %w2: f32[5,3] = param
  %b2: f32[1,5] = param
  %alpha: f32[] = const [0.5]
  %m2: f32[N,5] = matmul[trans_b] %h1, %w2
  %s2: f32[N,5] = mul %m2, %alpha
  %a2: f32[N,5] = add %b2, %s2                         ; -> Gemm: alpha, [1,n] bias, no activation
  %w3: f32[5,2] = param
  %b3: f32[2] = param
  %m3: f32[N,2] = matmul %a2, %w3
  %a3: f32[N,2] = add %m3, %b3
  %h3: f32[N,2] = leaky_relu[alpha=0.01] %a3           ; NOT the activation: a3 is used below
  %c0: f32[] = const [0.0]
  %mask: bool[N,2] = greater %a3, %c0
  %m4: f32[N,2] = matmul %a2, %w3
  %rows: f32[N,2] = input
  %a4: f32[N,2] = add %m4, %rows                       ; NOT: the bias is not a row vector
  %m5: f32[N,2] = matmul %a2, %w3
  %e5: f32[N,2] = exp %m5                              ; NOT: exp is not an activation; bare matmul stays
  %m6: f32[N,2] = matmul %a2, %w3
  %a6: f32[N,2] = add %m6, %b3                         ; NOT: m6 is an output too
  %m7: f32[N,2] = matmul %a2, %w3
  %a7: f32[N,2] = add %m7, %b3
  %s7: f32[N,2] = mul %a7, %alpha                      ; NOT alpha: it scales the bias too
  %t7: f32[N,2] = tanh %s7
  return %h3, %mask, %a4, %e5, %a6, %m6, %t7
}
"#
    ));
}

#[test]
fn fuse_conv() {
    insta::assert_snapshot!(snap(
        "fuse_conv",
        r#"
graph convs {
  %x: f32[N,3,8,8] = input
  %w1: f32[4,3,3,3] = param
  %b1: f32[4] = param
  %c1: f32[N,4,8,8] = conv[kernel=[3,3], pads=[1,1,1,1]] %x, %w1
  %p1: f32[4,1,1] = reshape[shape=[4,1,1]] %b1
  %a1: f32[N,4,8,8] = add %c1, %p1
  %h1: f32[N,4,8,8] = relu %a1                         ; -> fused.conv[bias, act=relu]
  %w2: f32[4,4,3,3] = param
  %c2: f32[N,4,8,8] = conv[kernel=[3,3], pads=[1,1,1,1]] %h1, %w2
  %a2: f32[N,4,8,8] = add %p1, %c2
  %s2: f32[N,4,8,8] = add %h1, %a2
  %h2: f32[N,4,8,8] = relu %s2                         ; -> bias, residual %h1, relu
  %w3: f32[4,1,3,3] = param
  %lo: f32[] = const [0.0]
  %hi: f32[] = const [6.0]
  %c3: f32[N,4,8,8] = conv[kernel=[3,3], pads=[1,1,1,1], groups=4] %h2, %w3
  %m3: f32[N,4,8,8] = max %c3, %lo
  %h3: f32[N,4,8,8] = min %m3, %hi                     ; -> ReLU6: min=0, max=6 (no bias)
  %w4: f32[4,4,1,1] = param
  %c4: f32[N,4,8,8] = conv[kernel=[1,1]] %h3, %w4
  %c5: f32[N,4,8,8] = conv[kernel=[1,1]] %h3, %w4
  %a5: f32[N,4,8,8] = add %c5, %p1
  %s45: f32[N,4,8,8] = add %c4, %a5                    ; -> c4 takes the residual a5 (bias only, itself fused)
  %c6: f32[N,4,8,8] = conv[kernel=[3,3], pads=[1,1,1,1]] %h1, %w2
  %a6: f32[N,4,8,8] = add %c6, %p1
  %l6: f32[N,4,8,8] = leaky_relu[alpha=0.1] %a6        ; NOT the activation: a6 is used below
  %c0: f32[] = const [0.0]
  %g6: bool[N,4,8,8] = greater %a6, %c0
  %c7: f32[N,4,8,8] = conv[kernel=[3,3], pads=[1,1,1,1]] %h1, %w2
  %full: f32[N,4,8,8] = input
  %a7: f32[N,4,1,1] = input
  %s7: f32[N,4,8,8] = add %c7, %a7                     ; NOT a bias: one value per image and channel
  %c8: f32[N,4,8,8] = conv[kernel=[3,3], pads=[1,1,1,1]] %h1, %w2
  %e8: f32[N,4,8,8] = exp %c8                          ; NOT: exp is not an activation
  %c9: f32[N,4,8,8] = conv[kernel=[3,3], pads=[1,1,1,1]] %h1, %w2
  %m9: f32[N,4,8,8] = max %c9, %full                   ; NOT a clip: the bound is a tensor
  return %h3, %s45, %l6, %g6, %s7, %e8, %m9
}
"#
    ));
}

#[test]
fn fuse_relu_grad() {
    insta::assert_snapshot!(snap(
        "fuse_relu_grad",
        r#"
graph g {
  %dy: f32[N,2] = input
  %w: f32[3,2] = param
  %h: f32[N,3] = input
  %c0: f32[] = const [0.0]
  %half: f32[] = const [0.5]
  %g1: f32[N,3] = matmul[trans_b] %dy, %w
  %mask: bool[N,3] = greater %h, %c0
  %d1: f32[N,3] = where %mask, %g1, %c0                ; -> fused.dense_relu_grad[trans_b]
  %g2: f32[N,3] = matmul[trans_b] %dy, %w
  %d2: f32[N,3] = where %mask, %g2, %c0                ; NOT: g2 is an output too
  %g3: f32[N,3] = matmul[trans_b] %dy, %w
  %mask3: bool[N,3] = greater %h, %half
  %d3: f32[N,3] = where %mask3, %g3, %c0               ; NOT: compares against 0.5
  %g4: f32[N,3] = matmul[trans_b] %dy, %w
  %d4: f32[N,3] = where %mask, %g4, %half              ; NOT: the other branch is not 0
  %g5: f32[N,3] = mul %h, %h
  %d5: f32[N,3] = where %mask, %g5, %c0                ; NOT: not a matrix product
  return %d1, %d2, %g2, %d3, %d4, %d5
}
"#
    ));
}

#[test]
fn fuse_bias_grad() {
    insta::assert_snapshot!(snap(
        "fuse_bias_grad",
        r#"
graph b {
  %logits: f32[N,2] = input
  %labels: i64[N] = input
  %w: f32[3,2] = param
  %h: f32[N,3] = input
  %dl: f32[N,2] = fused.softmax_ce[out=grad] %logits, %labels
  %db2: f32[2] = reduce_sum[axes=[0]] %dl              ; -> fused.softmax_ce[out=grad_col_sum]
  %dh: f32[N,3] = fused.dense_relu_grad[trans_b] %dl, %w, %h
  %db1: f32[3] = reduce_sum[axes=[0]] %dh              ; -> fused.dense_relu_grad[trans_b, out=col_sum]
  %no1: f32[N] = reduce_sum[axes=[1]] %dh              ; NOT: sums over columns
  %no2: f32[1,3] = reduce_sum[axes=[0], keep_dims] %dh ; NOT: keep_dims
  %p: f32[N,3] = mul %h, %h
  %no3: f32[3] = reduce_sum[axes=[0]] %p               ; NOT: a primitive producer
  return %db2, %db1, %no1, %no2, %no3, %dh
}
"#
    ));
}

/// A linear classifier `[N,4] -> [N,3]`: the smallest training step with every part.
fn linear_step(loss: Loss, optimizer: Optimizer, weight_decay: f32) -> String {
    let model = mlp(&[4, 3], UnaryOp::Relu, 1);
    let opts = TrainOptions { loss, optimizer, weight_decay, ..TrainOptions::default() };
    nnc_ir::print(&training_graph(&model, &opts).unwrap().graph)
}

#[test]
fn fuse_softmax_ce() {
    insta::assert_snapshot!(snap("fuse_softmax_ce", &linear_step(Loss::CrossEntropy, Optimizer::Sgd, 0.0)));
}

#[test]
fn fuse_softmax_ce_not() {
    insta::assert_snapshot!(snap(
        "fuse_softmax_ce",
        r#"
graph ce {
  %logits: f32[N,3] = input
  %labels: i64[N] = input
  %lp: f32[N,3] = log_softmax[axis=1] %logits
  %oh: f32[N,3] = one_hot[depth=3] %labels
  %picked: f32[N,3] = mul %oh, %lp
  %ll: f32[N] = reduce_sum[axes=[1]] %picked
  %total: f32[] = reduce_sum[axes=[0]] %ll
  %sum_loss: f32[] = neg %total                        ; NOT: a sum over the batch, not a mean
  %minus_two: f32[] = const [-2.0]
  %one: f32[] = const [1.0]
  %ones: f32[N] = broadcast[shape=[N]] %one
  %n: f32[] = reduce_sum[axes=[0]] %ones
  %s: f32[] = div %minus_two, %n
  %sb: f32[N,3] = broadcast[shape=[N,3]] %s
  %dlp: f32[N,3] = mul %sb, %oh
  %rs: f32[N,1] = reduce_sum[axes=[1], keep_dims] %dlp
  %p: f32[N,3] = exp %lp
  %pr: f32[N,3] = mul %p, %rs
  %grad2: f32[N,3] = sub %dlp, %pr                     ; NOT: scaled by -2/N, not -1/N
  return %sum_loss, %grad2
}
"#
    ));
}

#[test]
fn fuse_update_sgd() {
    insta::assert_snapshot!(snap("fuse_update", &linear_step(Loss::CrossEntropy, Optimizer::Sgd, 0.0)));
}

#[test]
fn fuse_update_nesterov_l2() {
    let opt = Optimizer::Momentum { momentum: 0.9, nesterov: true };
    insta::assert_snapshot!(snap("fuse_update", &linear_step(Loss::Mse, opt, 1e-4)));
}

#[test]
fn fuse_update_momentum() {
    insta::assert_snapshot!(snap("fuse_update", &linear_step(Loss::CrossEntropy, Optimizer::momentum(), 0.0)));
}

#[test]
fn fuse_update_adam() {
    insta::assert_snapshot!(snap("fuse_update", &linear_step(Loss::CrossEntropy, Optimizer::adam(), 0.0)));
}

#[test]
fn fuse_update_adamw() {
    insta::assert_snapshot!(snap("fuse_update", &linear_step(Loss::CrossEntropy, Optimizer::adam(), 0.01)));
}

#[test]
fn fuse_update_not() {
    insta::assert_snapshot!(snap(
        "fuse_update",
        r#"
graph u {
  %x: f32[N,4] = input
  %dy: f32[N,3] = input
  %lr: f32[] = input
  %w: f32[4,3] = param
  %g: f32[4,3] = matmul[trans_a] %x, %dy
  %step: f32[4,3] = mul %g, %lr
  %w_new: f32[4,3] = sub %w, %step                     ; NOT: step is an output too
  %v: f32[4,3] = param
  %gv: f32[4,3] = matmul[trans_a] %x, %dy
  %stepv: f32[4,3] = mul %gv, %lr
  %v_new: f32[4,3] = sub %v, %stepv                    ; -> fused.sgd, not in the product: gv is an output
  %b: f32[3] = param
  %gb: f32[3] = reduce_sum[axes=[0]] %dy
  %two: f32[] = const [2.0]
  %stepb: f32[3] = mul %gb, %two                       ; -> fused.sgd: a constant step size is a scalar too
  %b_new: f32[3] = sub %b, %stepb
  %c: f32[3] = param
  %m: f32[3] = state
  %mu: f32[] = const [0.9]
  %md: f32[3] = mul %m, %mu
  %m_new: f32[3] = add %md, %gb
  %stepc: f32[3] = mul %m_new, %lr
  %c_new: f32[3] = sub %c, %stepc                      ; NOT momentum (m is not updated with m_new): SGD on m_new
  %m_other: f32[3] = mul %m, %mu
  update %w <- %w_new
  update %v <- %v_new
  update %b <- %b_new
  update %c <- %c_new
  update %m <- %m_other
  return %step, %gv
}
"#
    ));
}
