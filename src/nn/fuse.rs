//! Which neighbours the layer set builds as one layer, so that they run in fewer dispatches
//! (`Spec::build` asks here first for each child of a `Sequential`):
//!
//! - BatchNorm2d → MaxPool2d with stride = k (→ ReLU): the BatchNorm2d computes its statistics, and the pool
//!   normalises as it reads (and applies the ReLU): one dispatch for the three forwards. In
//!   the backward the BatchNorm2d takes the pool's output gradient and routes it through
//!   the argmax itself: the pool's (and the ReLU's) backward costs no dispatch.
//! - MaxPool2d → ReLU: the pool applies the ReLU; its argmax then carries the ReLU's
//!   backward, so the pool's backward is both.
//! - Linear → ReLU: the ReLU is the product's epilogue.
//!
//! A ReLU's backward is also folded into the input gradient of a Linear after it; that
//! pairing is `Sequential::new`'s, as it also spans a `Repeat`'s copies. The fused layers
//! keep the state_dict names of the layers they replace; profile scopes join the names
//! ("batchnorm1+pool1+relu1", "fc1+relu3").

use anyhow::Result;

use super::store::Builder;
use super::{join, layers, Feat, Layer, Spec};
use crate::backend::Backend;

/// The layers built for a fusable run of `children` starting at `i`, how many children they
/// cover and the output shape; None when no rule applies at `i`.
#[allow(clippy::type_complexity)]
pub fn build_run<B: Backend + 'static>(
    b: &mut Builder<B>,
    path: &str,
    children: &[(String, Spec)],
    i: usize,
    x: Feat,
) -> Result<Option<(Vec<Box<dyn Layer<B>>>, usize, Feat)>> {
    let spec = |j: usize| children.get(j).map(|(_, s)| s);
    let name = |j: usize| children[j].0.as_str();
    let relu_at = |j: usize| matches!(spec(j), Some(Spec::ReLU));
    Ok(match (spec(i), spec(i + 1)) {
        (Some(Spec::BatchNorm2d { c }), Some(&Spec::MaxPool2d { k, stride })) if k == stride => {
            let bn_path = join(path, name(i));
            let y = children[i].1.output(&bn_path, x)?;
            let pool_spec = &children[i + 1].1;
            let out = pool_spec.output(&join(path, name(i + 1)), y)?;
            let relu = relu_at(i + 2);
            let count = if relu { 3 } else { 2 };
            let scope = join(path, &(i..i + count).map(name).collect::<Vec<_>>().join("+"));
            let (mut bn, normalization) = layers::BatchNorm2d::normalized_by_next(b, &bn_path, x, *c);
            let mut pool = layers::MaxPool2d::new(b, &scope, y, k, stride).with_normalize(normalization).backward_done_by_prev();
            if relu {
                pool = pool.with_relu();
            }
            bn.fold_pool_backward(&pool);
            Some((vec![Box::new(bn), Box::new(pool)], count, out))
        }
        (Some(&Spec::MaxPool2d { k, stride }), Some(Spec::ReLU)) => {
            let out = children[i].1.output(&join(path, name(i)), x)?;
            let scope = join(path, &format!("{}+{}", name(i), name(i + 1)));
            Some((vec![Box::new(layers::MaxPool2d::new(b, &scope, x, k, stride).with_relu())], 2, out))
        }
        (Some(&Spec::Linear { d_in, d_out }), Some(Spec::ReLU)) => {
            let p = join(path, name(i));
            let out = children[i].1.output(&p, x)?;
            Some((vec![Box::new(layers::Linear::new(b, &p, d_in, d_out).with_relu(name(i + 1)))], 2, out))
        }
        _ => None,
    })
}
