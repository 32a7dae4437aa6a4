//! Golden values for every named optimizer: 3 steps on two parameter tensors
//! (`b`: 3, `w`: 2×3) with the parameter-dependent gradient `g(p) = a⊙p + s`,
//! compared at every step to rtol 1e-9 in f64 and 1e-5 in f32.
//!
//! The values come from this script (numpy 2.4.6, optax 0.2.8, jax 0.10.2,
//! float64). PyTorch is not installable here, so its algorithms are
//! transcribed from the `torch.optim` documentation's pseudo-code; every case
//! optax also implements with the same equations is asserted equal to optax
//! to rtol 1e-12 (all but AdaGrad, whose ε placement differs in optax, and
//! LARS, where optax uses ‖g + λw‖ instead of ‖g‖ + λ‖w‖). The printed
//! constants are pasted below verbatim.
//!
//! ```python
//! # Golden values for tests/golden.rs: float64, 3 steps, g(p) = a*p + s per tensor.
//! # PyTorch semantics transcribed from the torch.optim docs' pseudo-code (numpy);
//! # optax 0.2.8 (jax x64) where optax follows the same equations, cross-checked.
//! import numpy as np, jax, optax
//! jax.config.update("jax_enable_x64", True)
//! P0 = {"b": np.array([0.1, -0.2, 0.3]),
//!       "w": np.array([[0.5, -1.0, 1.5], [2.0, -0.5, 0.25]])}
//! A = {"b": np.array([0.8, 1.2, 2.0]), "w": np.array([[1.0, 2.0, 0.5], [3.0, 1.5, 0.7]])}
//! S = {"b": np.array([0.1, 0.0, -0.3]), "w": np.array([[0.3, -0.1, 0.2], [-0.4, 0.5, 0.05]])}
//! grad = lambda p: {k: A[k] * p[k] + S[k] for k in p}
//! decay = lambda k: k != "b"  # weight-decay mask: exclude the rank-1 bias
//! norm = np.linalg.norm
//!
//! def run_numpy(step_fn, state_fn, n=3):
//!     p = {k: v.copy() for k, v in P0.items()}; st = {k: state_fn(v) for k, v in p.items()}; out = []
//!     for t in range(1, n + 1):
//!         g = grad(p)
//!         for k in p: p[k] = step_fn(k, p[k], g[k], st[k], t)
//!         out.append({k: v.copy() for k, v in p.items()})
//!     return out
//!
//! def run_optax(tx, n=3):
//!     p = {k: jax.numpy.asarray(v) for k, v in P0.items()}; st = tx.init(p); out = []
//!     for _ in range(n):
//!         u, st = tx.update({k: jax.numpy.asarray(v) for k, v in grad(p).items()}, st, p)
//!         p = optax.apply_updates(p, u); out.append({k: np.asarray(v) for k, v in p.items()})
//!     return out
//!
//! def torch_sgd(lr, mu=0.0, nesterov=False, wd=0.0):  # torch.optim.SGD, dampening 0
//!     def f(k, p, g, st, t):
//!         g = g + wd * p
//!         if mu:
//!             st["b"] = g.copy() if t == 1 else mu * st["b"] + g
//!             g = g + mu * st["b"] if nesterov else st["b"]
//!         return p - lr * g
//!     return f
//!
//! def torch_adagrad(lr, s0, eps):  # torch.optim.Adagrad, lr_decay 0
//!     def f(k, p, g, st, t):
//!         st["s"] = st.get("s", np.full_like(p, s0)) + g * g
//!         return p - lr * g / (np.sqrt(st["s"]) + eps)
//!     return f
//!
//! def torch_rmsprop(lr, alpha, eps, centered=False, mu=0.0):  # torch.optim.RMSprop
//!     def f(k, p, g, st, t):
//!         st["v"] = alpha * st.get("v", 0 * p) + (1 - alpha) * g * g
//!         if centered:
//!             st["m"] = alpha * st.get("m", 0 * p) + (1 - alpha) * g
//!             avg = np.sqrt(st["v"] - st["m"] ** 2) + eps
//!         else:
//!             avg = np.sqrt(st["v"]) + eps
//!         if mu:
//!             st["b"] = mu * st.get("b", 0 * p) + g / avg
//!             return p - lr * st["b"]
//!         return p - lr * g / avg
//!     return f
//!
//! def torch_adam(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):  # Adam / AdamW
//!     def f(k, p, g, st, t):
//!         if decoupled: p = p * (1 - lr * wd)
//!         st["m"] = b1 * st.get("m", 0 * p) + (1 - b1) * g
//!         st["v"] = b2 * st.get("v", 0 * p) + (1 - b2) * g * g
//!         mhat = st["m"] / (1 - b1 ** t); vhat = st["v"] / (1 - b2 ** t)
//!         return p - lr * mhat / (np.sqrt(vhat) + eps)
//!     return f
//!
//! def mlperf_lars(lr, mu, wd, eta):  # MLPerf ResNet-50 LARS (You et al. 2017), skip-list = bias
//!     def f(k, p, g, st, t):
//!         w = wd if decay(k) else 0.0
//!         wn, gn = norm(p), norm(g)
//!         r = eta * wn / (gn + w * wn) if wn > 0 and gn > 0 else 1.0
//!         st["v"] = mu * st.get("v", 0 * p) + lr * r * (g + w * p)
//!         return p - st["v"]
//!     return f
//!
//! def lamb_paper(lr, b1, b2, eps, wd):  # You et al. 2020 Algorithm 2 (bias-corrected, as optax)
//!     def f(k, p, g, st, t):
//!         st["m"] = b1 * st.get("m", 0 * p) + (1 - b1) * g
//!         st["v"] = b2 * st.get("v", 0 * p) + (1 - b2) * g * g
//!         u = (st["m"] / (1 - b1 ** t)) / (np.sqrt(st["v"] / (1 - b2 ** t)) + eps)
//!         u = u + (wd * p if decay(k) else 0)
//!         r = norm(p) / norm(u) if norm(p) > 0 and norm(u) > 0 else 1.0
//!         return p - lr * r * u
//!     return f
//!
//! mask = lambda p: {k: decay(k) for k in p}
//! cases = {
//!     "sgd": (torch_sgd(0.1), optax.sgd(0.1)),
//!     "momentum": (torch_sgd(0.1, 0.9), optax.sgd(0.1, momentum=0.9)),
//!     "nesterov": (torch_sgd(0.1, 0.9, True), optax.sgd(0.1, momentum=0.9, nesterov=True)),
//!     "adagrad": (torch_adagrad(0.1, 0.1, 1e-10), None),
//!     "rmsprop": (torch_rmsprop(0.01, 0.9, 1e-8), optax.rmsprop(0.01, decay=0.9, eps=1e-8, eps_in_sqrt=False)),
//!     "rmsprop_centered_momentum": (torch_rmsprop(0.01, 0.9, 1e-8, True, 0.5),
//!         optax.rmsprop(0.01, decay=0.9, eps=1e-8, eps_in_sqrt=False, centered=True, momentum=0.5)),
//!     "adam": (torch_adam(0.01), optax.adam(0.01)),
//!     "adamw": (torch_adam(0.01, wd=0.1, decoupled=True), optax.adamw(0.01, weight_decay=0.1)),
//!     "lars": (mlperf_lars(0.5, 0.9, 0.01, 0.01), None),
//!     "lamb": (lamb_paper(0.01, 0.9, 0.999, 1e-6, 0.01), optax.lamb(0.01, weight_decay=0.01, mask=mask)),
//! }
//! for name, (ref, tx) in cases.items():
//!     ours = run_numpy(ref, lambda v: {})
//!     if tx is not None:
//!         for a, b in zip(ours, run_optax(tx)):
//!             for k in a: assert np.allclose(a[k], b[k], rtol=1e-12, atol=0), (name, k)
//!     print(f"// {name}")
//!     print(f"const {name.upper()}: [[f64; 9]; 3] = [")
//!     for p in ours:
//!         print("    [" + ", ".join(repr(float(x)) for x in np.concatenate([p["b"], p["w"].ravel()])) + "],")
//!     print("];")
//! ```

use bigbatch_optim::{
    AdagradConfig, AdamConfig, LambConfig, LarsConfig, RmsConfig, Transform, Tree, adagrad, adam,
    adamw, boxed, lamb, lars, mask, momentum, nesterov, rmsprop, sgd,
};
use candle_core::{DType, Device, Tensor};

// sgd
const SGD: [[f64; 9]; 3] = [
    [
        0.082,
        -0.17600000000000002,
        0.27,
        0.42,
        -0.79,
        1.405,
        1.44,
        -0.475,
        0.2275,
    ],
    [
        0.06544,
        -0.15488000000000002,
        0.246,
        0.348,
        -0.622,
        1.31475,
        1.0479999999999998,
        -0.45375,
        0.206575,
    ],
    [
        0.050204799999999994,
        -0.1362944,
        0.2268,
        0.2832,
        -0.4876,
        1.2290125,
        0.7735999999999998,
        -0.4356875,
        0.18711475,
    ],
];
// momentum
const MOMENTUM: [[f64; 9]; 3] = [
    [
        0.082,
        -0.17600000000000002,
        0.27,
        0.42,
        -0.79,
        1.405,
        1.44,
        -0.475,
        0.2275,
    ],
    [
        0.04924,
        -0.13328,
        0.21900000000000003,
        0.276,
        -0.433,
        1.22925,
        0.5439999999999998,
        -0.43124999999999997,
        0.18632500000000002,
    ],
    [
        0.00581679999999999,
        -0.0788384,
        0.15930000000000002,
        0.08879999999999999,
        -0.015099999999999947,
        0.9896125,
        -0.3856000000000004,
        -0.37718749999999995,
        0.13122475,
    ],
];
// nesterov
const NESTEROV: [[f64; 9]; 3] = [
    [
        0.0658,
        -0.1544,
        0.243,
        0.348,
        -0.601,
        1.3195000000000001,
        0.9359999999999999,
        -0.4525,
        0.20725,
    ],
    [
        0.022218399999999992,
        -0.0997568,
        0.18336,
        0.16008,
        -0.1835199999999999,
        1.0791975,
        0.024879999999999902,
        -0.3982875,
        0.15196074999999998,
    ],
    [
        -0.025644636800000016,
        -0.044508569600000006,
        0.13374719999999998,
        -0.038143200000000016,
        0.16376960000000013,
        0.7997789875,
        -0.5165896000000002,
        -0.3470718125,
        0.09004639524999997,
    ],
];
// adagrad
const ADAGRAD: [[f64; 9]; 3] = [
    [
        0.050531526119957024,
        -0.13954487339204302,
        0.23117527985462094,
        0.4070018890157554,
        -0.901114862041574,
        1.4051185278160812,
        1.9001590584768864,
        -0.4379826327207804,
        0.192025903638863,
    ],
    [
        0.014527336664074637,
        -0.10067989536261653,
        0.1962718900236044,
        0.3435074473969612,
        -0.8343945070467667,
        1.338163262768242,
        1.8314750486477742,
        -0.4016962798796991,
        0.14910720465635435,
    ],
    [
        -0.012987218644183379,
        -0.07368065487691136,
        0.17675856794878905,
        0.2934703707233231,
        -0.7816760228217969,
        1.2839769049166412,
        1.776382706301555,
        -0.37863110059572463,
        0.11529614790102645,
    ],
];
// rmsprop
const RMSPROP: [[f64; 9]; 3] = [
    [
        0.0683772289538708,
        -0.16837722756498233,
        0.26837722673164915,
        0.46837722464831616,
        -0.9683772238745066,
        1.4683772244509476,
        1.9683772235768877,
        -0.46837722739831567,
        0.21837722784276,
    ],
    [
        0.04714585535210404,
        -0.14738753740640573,
        0.24815381761615857,
        0.44587890655982765,
        -0.9457708433938617,
        1.445618916402971,
        1.9456222316493863,
        -0.4478397135730957,
        0.1965923750837477,
    ],
    [
        0.030289515903692846,
        -0.1308717939311789,
        0.23272491382952618,
        0.42726737041437085,
        -0.9270126326944303,
        1.4266554586972395,
        1.9266632417779177,
        -0.431964334432536,
        0.17896209465004959,
    ],
];
// rmsprop_centered_momentum
const RMSPROP_CENTERED_MOMENTUM: [[f64; 9]; 3] = [
    [
        0.06666667283950503,
        -0.16666667129629564,
        0.26666667037036995,
        0.4666666680555555,
        -0.9666666671957672,
        1.4666666678362572,
        1.9666666668650794,
        -0.4666666711111105,
        0.21666667160493752,
    ],
    [
        0.026542479889214522,
        -0.1268339791848729,
        0.22776366222110797,
        0.42503072356568133,
        -0.9249032208043698,
        1.4247243927064261,
        1.9247282890781734,
        -0.4273816373162888,
        0.17587845846049527,
    ],
    [
        -0.01145386538894174,
        -0.08969425102395341,
        0.19341931911176713,
        0.3828091119580678,
        -0.8823448304435257,
        1.381699372892025,
        1.881713368351741,
        -0.39187863306212123,
        0.13597714815861126,
    ],
];
// adam
const ADAM: [[f64; 9]; 3] = [
    [
        0.09000000055555553,
        -0.19000000041666665,
        0.2900000003333333,
        0.490000000125,
        -0.990000000047619,
        1.4900000001052631,
        1.990000000017857,
        -0.49000000039999997,
        0.24000000044444442,
    ],
    [
        0.08001442792953764,
        -0.1800166494033504,
        0.280023906837727,
        0.4800034766684063,
        -0.9800026088596101,
        1.4800014105135084,
        1.9800014362243759,
        -0.48002089581831486,
        0.23000948558756507,
    ],
    [
        0.07005387430778058,
        -0.1700623404041628,
        0.27009028797635054,
        0.47001279905485893,
        -0.9700095932257248,
        1.4700051779051182,
        1.9700052728623552,
        -0.4700786397952015,
        0.2200351982278051,
    ],
];
// adamw
const ADAMW: [[f64; 9]; 3] = [
    [
        0.08990000055555553,
        -0.18980000041666664,
        0.28970000033333326,
        0.489500000125,
        -0.989000000047619,
        1.488500000105263,
        1.988000000017857,
        -0.48950000039999997,
        0.23975000044444442,
    ],
    [
        0.07982470210697669,
        -0.17962725965604606,
        0.27943513876434084,
        0.47901416208528,
        -0.9780138837667693,
        1.477013128724619,
        1.976013733074569,
        -0.47903273279122127,
        0.22952000899810684,
    ],
    [
        0.06978478749978378,
        -0.16949445263735125,
        0.26922473001755065,
        0.46854496564862014,
        -0.9670435901621133,
        1.4655404654301172,
        1.9640423491921888,
        -0.4686152338542172,
        0.2193169403982462,
    ],
];
// lars
const LARS: [[f64; 9]; 3] = [
    [
        0.09920627460668063,
        -0.19894169947557416,
        0.2986771243444677,
        0.49816938656464094,
        -0.995201746150798,
        1.497805537931526,
        1.9872198167618411,
        -0.4994201162409732,
        0.24948265272478984,
    ],
    [
        0.0976995452200915,
        -0.19693459705162916,
        0.2961729215433044,
        0.4946919967787642,
        -0.9860980291196146,
        1.4936344900804797,
        1.9630011191181627,
        -0.4983192434118345,
        0.24849955852784794,
    ],
    [
        0.09555366225410863,
        -0.1940805320947279,
        0.29262309630310823,
        0.48973390813484713,
        -0.9731438951561545,
        1.4876814211134177,
        1.9286083639168798,
        -0.4967511833374777,
        0.2470970128715947,
    ],
];
// lamb
const LAMB: [[f64; 9]; 3] = [
    [
        0.09783975570081618,
        -0.1978397527004894,
        0.2978397509002893,
        0.4886411234592597,
        -0.9885846028195123,
        1.488528097440784,
        1.9884715756679632,
        -0.48864115454063817,
        0.23866941551081225,
    ],
    [
        0.09569937020294679,
        -0.1956994385360065,
        0.2956996631745459,
        0.4773738308450216,
        -0.9772601188691579,
        1.4771460000313357,
        1.9770334329586805,
        -0.47739701738986107,
        0.2274380258505528,
    ],
    [
        0.0935785440451065,
        -0.19357880675320546,
        0.29357963716050656,
        0.46619392618573086,
        -0.9660215788998706,
        1.4658476901667663,
        1.96567954684215,
        -0.46628105791810964,
        0.21630717149411896,
    ],
];

const P0_B: [f64; 3] = [0.1, -0.2, 0.3];
const P0_W: [[f64; 3]; 2] = [[0.5, -1.0, 1.5], [2.0, -0.5, 0.25]];
const A_B: [f64; 3] = [0.8, 1.2, 2.0];
const A_W: [[f64; 3]; 2] = [[1.0, 2.0, 0.5], [3.0, 1.5, 0.7]];
const S_B: [f64; 3] = [0.1, 0.0, -0.3];
const S_W: [[f64; 3]; 2] = [[0.3, -0.1, 0.2], [-0.4, 0.5, 0.05]];

fn tree(b: [f64; 3], w: [[f64; 3]; 2], dtype: DType) -> anyhow::Result<Tree> {
    let d = Device::Cpu;
    let mut t = Tree::new();
    t.insert("b", Tensor::new(&b, &d)?.to_dtype(dtype)?);
    t.insert("w", Tensor::new(&w, &d)?.to_dtype(dtype)?);
    Ok(t)
}

fn flat(t: &Tree) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for (_, x) in t.iter() {
        out.extend(x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?);
    }
    Ok(out)
}

/// Runs `tx` for 3 steps from `P0` and checks the parameters after every step.
fn check(name: &str, tx: impl Transform + 'static, want: &[[f64; 9]; 3]) -> anyhow::Result<()> {
    let tx = boxed(tx);
    for (dtype, rtol, atol) in [(DType::F64, 1e-9, 0.0), (DType::F32, 1e-5, 1e-6)] {
        let a = tree(A_B, A_W, dtype)?;
        let s = tree(S_B, S_W, dtype)?;
        let mut p = tree(P0_B, P0_W, dtype)?;
        let mut state = tx.init(&p)?;
        for (step, want) in want.iter().enumerate() {
            let g = p.zip_map(&a, |_, p, a| Ok((p * a)?))?;
            let g = g.zip_map(&s, |_, g, s| Ok((g + s)?))?;
            let (u, next) = tx.update(g, state, &p)?;
            state = next;
            p = p.zip_map(&u, |_, p, u| Ok((p + u)?))?;
            for (i, (got, want)) in flat(&p)?.iter().zip(want).enumerate() {
                assert!(
                    (got - want).abs() <= rtol * want.abs() + atol,
                    "{name} {dtype:?} step {} entry {i}: got {got}, want {want}",
                    step + 1
                );
            }
        }
    }
    Ok(())
}

fn no_bias() -> mask::Mask {
    mask::Mask::new(|name, _| name != "b")
}

#[test]
fn sgd_matches_reference() -> anyhow::Result<()> {
    check("sgd", sgd(0.1), &SGD)
}

#[test]
fn momentum_matches_reference() -> anyhow::Result<()> {
    check("momentum", momentum(0.1, 0.9), &MOMENTUM)
}

#[test]
fn nesterov_matches_reference() -> anyhow::Result<()> {
    check("nesterov", nesterov(0.1, 0.9), &NESTEROV)
}

#[test]
fn adagrad_matches_reference() -> anyhow::Result<()> {
    let cfg = AdagradConfig {
        initial_accumulator_value: 0.1,
        eps: 1e-10,
    };
    check("adagrad", adagrad(0.1, cfg), &ADAGRAD)
}

#[test]
fn rmsprop_matches_reference() -> anyhow::Result<()> {
    let cfg = RmsConfig {
        decay: 0.9,
        eps: 1e-8,
        ..RmsConfig::default()
    };
    check("rmsprop", rmsprop(0.01, cfg, 0.0), &RMSPROP)?;
    let centered = RmsConfig {
        centered: true,
        ..cfg
    };
    check(
        "rmsprop centered",
        rmsprop(0.01, centered, 0.5),
        &RMSPROP_CENTERED_MOMENTUM,
    )
}

#[test]
fn adam_matches_reference() -> anyhow::Result<()> {
    check("adam", adam(0.01, AdamConfig::default()), &ADAM)
}

#[test]
fn adamw_matches_reference() -> anyhow::Result<()> {
    check(
        "adamw",
        adamw(0.01, AdamConfig::default(), 0.1, mask::all()),
        &ADAMW,
    )
}

#[test]
fn lars_matches_reference() -> anyhow::Result<()> {
    let cfg = LarsConfig {
        momentum: 0.9,
        weight_decay: 0.01,
        eta: 0.01,
        weight_decay_mask: no_bias(),
        ..LarsConfig::default()
    };
    check("lars", lars(0.5, cfg), &LARS)
}

#[test]
fn lamb_matches_reference() -> anyhow::Result<()> {
    let cfg = LambConfig {
        weight_decay: 0.01,
        weight_decay_mask: no_bias(),
        ..LambConfig::default()
    };
    check("lamb", lamb(0.01, cfg), &LAMB)
}
