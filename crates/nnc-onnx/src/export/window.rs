//! ONNX nodes for convolutions and pooling: `Conv`, `ConvTranspose` (the data
//! gradient), `MaxPool` and `AveragePool`, with every attribute written out.

use super::{proto_build as pb, Exporter};
use crate::proto::AttributeProto;
use crate::OnnxError;
use nnc_ir::{Conv, Op, Pool, PoolKind, ValueId, Window};

fn ints(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

fn window_attrs(w: &Window, with_dilations: bool) -> Vec<AttributeProto> {
    let pads: Vec<usize> = w.pads_begin.iter().chain(&w.pads_end).copied().collect();
    let mut attrs = vec![
        pb::attr_ints("kernel_shape", ints(&w.kernel)),
        pb::attr_ints("strides", ints(&w.strides)),
        pb::attr_ints("pads", ints(&pads)),
    ];
    if with_dilations {
        attrs.push(pb::attr_ints("dilations", ints(&w.dilations)));
    }
    attrs
}

fn conv_attrs(conv: &Conv) -> Vec<AttributeProto> {
    let mut attrs = window_attrs(&conv.window, true);
    attrs.push(pb::attr_int("group", conv.groups as i64));
    attrs
}

impl Exporter<'_> {
    pub(super) fn window_nodes(&mut self, id: ValueId) -> Result<(), OnnxError> {
        let g = self.g;
        let v = g.value(id);
        let name = v.name.as_str();
        let args: Vec<&str> = v.args.iter().map(|&a| g.name_of(a)).collect();
        let refuse = |message: String| OnnxError::Export { value: name.to_string(), message };
        match &v.op {
            Op::Conv(conv) => self.node("Conv", &args, name, conv_attrs(conv)),
            Op::ConvBackwardData { conv, input } => {
                // ConvTranspose's output size is s·(I − 1) + extent − pads + output_padding;
                // output_padding is what the forward convolution's floor dropped.
                let w = &conv.window;
                let out = &g.ty(v.args[0]).shape.0[2..];
                let mut output_padding = Vec::with_capacity(w.rank());
                for i in 0..w.rank() {
                    let o = out[i].fixed().unwrap_or(0);
                    let spanned = (o.saturating_sub(1) * w.strides[i] + w.extent(i))
                        .checked_sub(w.pads_begin[i] + w.pads_end[i])
                        .ok_or_else(|| refuse("the padding exceeds the transposed convolution's output".into()))?;
                    output_padding.push(input[i] - spanned.min(input[i]));
                }
                let mut attrs = conv_attrs(conv);
                attrs.push(pb::attr_ints("output_padding", ints(&output_padding)));
                self.node("ConvTranspose", &args, name, attrs);
            }
            Op::Pool(pool) => self.pool(name, args[0], pool)?,
            Op::ConvBackwardFilter { .. } | Op::PoolBackward { .. } => {
                return Err(refuse(format!(
                    "{} has no standard ONNX form yet: the training step of a convolutional network cannot be \
                     exported",
                    v.op.mnemonic()
                )))
            }
            _ => return Err(refuse(format!("internal: {} is not a window op", v.op.mnemonic()))),
        }
        Ok(())
    }

    fn pool(&mut self, name: &str, x: &str, pool: &Pool) -> Result<(), OnnxError> {
        let dilated = pool.window.dilations.iter().any(|&d| d != 1);
        let (op_type, dilations_from) = match pool.kind {
            PoolKind::Max => ("MaxPool", 10),
            PoolKind::Avg { .. } => ("AveragePool", 19),
        };
        if dilated && self.opset < dilations_from {
            return Err(OnnxError::Export {
                value: name.to_string(),
                message: format!("{op_type} has dilations from opset {dilations_from}; export at that opset or later"),
            });
        }
        let mut attrs = window_attrs(&pool.window, dilated);
        attrs.push(pb::attr_int("ceil_mode", pool.ceil_mode as i64));
        if let PoolKind::Avg { count_include_pad } = pool.kind {
            attrs.push(pb::attr_int("count_include_pad", count_include_pad as i64));
        }
        self.node(op_type, &[x], name, attrs);
        Ok(())
    }
}
