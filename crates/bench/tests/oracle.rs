//! The network oracle's Hessian-vector products against the closed form: a
//! softmax regression (one linear layer under the mean cross-entropy), whose
//! Hessian is `(1/n) Σᵢ (diag pᵢ − pᵢpᵢᵀ) ⊗ x̃ᵢx̃ᵢᵀ` with `x̃ = (x, 1)`.

use anyhow::Result;
use bigbatch_bench::{Model, NetworkOracle, param_tree};
use bigbatch_data::{ImageClassification, ImageShape, Normalization};
use bigbatch_models::layers::Linear;
use bigbatch_models::{Network, VarStore};
use bigbatch_noise::{FiniteDifferenceHvp, HessianVectorProduct};
use bigbatch_optim::Tree;
use bigbatch_spec::BatchNormPolicy;
use candle_core::{DType, Device, Tensor};

const CLASSES: usize = 3;
const FEATURES: usize = 4;

/// `xs` (N, 1, 2, 2) flattened, then the linear layer.
struct Softmax(Linear);

impl Network for Softmax {
    fn forward(&self, xs: &Tensor, _train: bool) -> bigbatch_models::Result<Tensor> {
        self.0.forward(&xs.flatten_from(1)?)
    }
}

#[test]
fn finite_difference_hvp_matches_the_closed_form_hessian() -> Result<()> {
    let device = Device::Cpu;
    let n = 24;
    let pixels: Vec<u8> = (0..n * FEATURES)
        .map(|i| ((i * 53 + 11) % 256) as u8)
        .collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % CLASSES as u32).collect();
    let set = ImageClassification::new(ImageShape::new(1, 2, 2), pixels, labels, CLASSES)?;
    let norm = Normalization::new(vec![0.5], vec![0.25])?;

    let vars = VarStore::new(3);
    let vb = vars.var_builder(DType::F32, &device).pp("fc");
    let weight = vb.get((CLASSES, FEATURES), "weight")?;
    let bias = vb.get(CLASSES, "bias")?;
    let model = Model {
        net: Box::new(Softmax(Linear::new(weight, Some(bias)))),
        vars,
        batch_norm: None,
    };
    let params = param_tree(&model)?;
    let mut oracle = NetworkOracle::new(
        &model,
        &set,
        &set,
        &norm,
        &device,
        BatchNormPolicy::Eval,
        10,
    )?;
    let examples: Vec<usize> = (0..n).collect();

    // A direction with both tensors' shapes.
    let mut v = Tree::new();
    let vw: Vec<f32> = (0..CLASSES * FEATURES)
        .map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.3)
        .collect();
    v.insert(
        "fc.weight",
        Tensor::from_vec(vw.clone(), (CLASSES, FEATURES), &device)?,
    );
    v.insert("fc.bias", Tensor::new(&[0.5f32, -1.0, 0.25], &device)?);

    let mut hvp = FiniteDifferenceHvp::new(
        &mut oracle,
        &params,
        examples.clone(),
        FiniteDifferenceHvp::<NetworkOracle<'_>>::DEFAULT_REL_STEP,
    )?;
    let fd = hvp.hvp(&v)?;

    // The closed form, in f64, on the same normalised inputs.
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    set.batch_into(&examples, &norm, &mut xs, &mut ys);
    let w: Vec<Vec<f64>> = params
        .get("fc.weight")
        .expect("weight")
        .to_dtype(DType::F64)?
        .to_vec2()?;
    let b: Vec<f64> = params
        .get("fc.bias")
        .expect("bias")
        .to_dtype(DType::F64)?
        .to_vec1()?;
    let vb_: [f64; CLASSES] = [0.5, -1.0, 0.25];
    let (mut hw, mut hb) = (vec![[0.0; FEATURES]; CLASSES], [0.0; CLASSES]);
    for x in xs.chunks(FEATURES) {
        let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let logits: Vec<f64> = (0..CLASSES)
            .map(|c| b[c] + (0..FEATURES).map(|j| w[c][j] * x[j]).sum::<f64>())
            .collect();
        let max = logits.iter().copied().fold(f64::MIN, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let p: Vec<f64> = e.iter().map(|v| v / e.iter().sum::<f64>()).collect();
        // z = V_W x + V_b: the logits' change along v; u = (diag p − ppᵀ) z.
        let z: Vec<f64> = (0..CLASSES)
            .map(|c| {
                vb_[c]
                    + (0..FEATURES)
                        .map(|j| f64::from(vw[c * FEATURES + j]) * x[j])
                        .sum::<f64>()
            })
            .collect();
        let pz: f64 = (0..CLASSES).map(|c| p[c] * z[c]).sum();
        for c in 0..CLASSES {
            let u = p[c] * (z[c] - pz) / n as f64;
            hb[c] += u;
            for j in 0..FEATURES {
                hw[c][j] += u * x[j];
            }
        }
    }
    let got_w: Vec<Vec<f64>> = fd
        .get("fc.weight")
        .expect("weight")
        .to_dtype(DType::F64)?
        .to_vec2()?;
    let got_b: Vec<f64> = fd
        .get("fc.bias")
        .expect("bias")
        .to_dtype(DType::F64)?
        .to_vec1()?;
    let want: Vec<f64> = hw.iter().flatten().copied().chain(hb).collect();
    let got: Vec<f64> = got_w.into_iter().flatten().chain(got_b).collect();
    let norm_want = want.iter().map(|v| v * v).sum::<f64>().sqrt();
    let err = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    eprintln!("|Hv_fd − Hv| = {err:.3e}, |Hv| = {norm_want:.3e}");
    assert!(norm_want > 1e-3, "a degenerate test: |Hv| = {norm_want}");
    assert!(
        err <= 1e-3 * norm_want,
        "|Hv_fd − Hv| = {err:.3e}, |Hv| = {norm_want:.3e}"
    );
    Ok(())
}
