//! No transpose is materialized in front of a matrix product: `matmul(transpose(x), y)`
//! becomes `matmul[trans_a](x, y)` (and likewise for `b` and for fused products),
//! when the transpose swaps the last two axes and keeps the others. The transpose
//! stays only if something else reads it.

use crate::rewrite::Rewriter;
use crate::OptError;
use nnc_ir::{Graph, Op};

pub const NAME: &str = "fold_transpose";

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let mut rw = Rewriter::new(graph, NAME);
    for id in graph.ids() {
        let v = graph.value(id);
        let (flags, fused) = match &v.op {
            Op::MatMul { trans_a, trans_b } => ((*trans_a, *trans_b), None),
            Op::Fused(f) => match f.matmul_flags() {
                Some(flags) if graph.ty(v.args[0]).rank() == 2 => (flags, Some(f.clone())),
                _ => continue,
            },
            _ => continue,
        };
        let mut flags = [flags.0, flags.1];
        let mut args = v.args.clone();
        let mut changed = false;
        for (slot, flag) in flags.iter_mut().enumerate() {
            let t = graph.value(args[slot]);
            if let Op::Transpose { perm } = &t.op {
                if swaps_last_two(perm) {
                    args[slot] = t.args[0];
                    *flag = !*flag;
                    changed = true;
                }
            }
        }
        if changed {
            let op = match fused {
                Some(f) => Op::Fused(f.with_matmul_flags(flags[0], flags[1])),
                None => Op::MatMul { trans_a: flags[0], trans_b: flags[1] },
            };
            rw.replace(id, op, args);
        }
    }
    rw.finish()
}

/// `perm` exchanges the last two axes and leaves the leading ones in place.
fn swaps_last_two(perm: &[usize]) -> bool {
    let r = perm.len();
    r >= 2 && perm[..r - 2].iter().enumerate().all(|(i, &p)| i == p) && perm[r - 2] == r - 1 && perm[r - 1] == r - 2
}
