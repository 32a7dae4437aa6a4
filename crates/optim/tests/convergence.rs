//! One table of every optimizer: each must reach the minimum of a quadratic
//! and of the Rosenbrock function from a fixed start, keep every value finite
//! and every shape unchanged.

use bigbatch_optim::schedule::CosineDecay;
use bigbatch_optim::{
    AdagradConfig, AdamConfig, Boxed, LambConfig, LarsConfig, RmsConfig, Transform, Tree,
    TrustRatioConfig, adagrad, adam, adamw, boxed, lamb, lars, layerwise, mask, momentum, nesterov,
    rmsprop, sgd,
};
use candle_core::{Device, Tensor};

/// A problem: start, gradient, minimiser.
trait Problem {
    fn start(&self) -> anyhow::Result<Tree>;
    fn grad(&self, p: &Tree) -> anyhow::Result<Tree>;
    fn minimiser(&self) -> Vec<f64>;
}

/// `f(p) = Σ ½·a⊙(p − c)²` over a 2×3 weight and a 3-vector bias (condition number 6).
struct Quadratic {
    a: Tree,
    c: Tree,
}

impl Quadratic {
    fn new() -> anyhow::Result<Self> {
        let d = Device::Cpu;
        let mut a = Tree::new();
        a.insert("b", Tensor::new(&[0.5f64, 1.0, 3.0], &d)?);
        a.insert(
            "w",
            Tensor::new(&[[1.0f64, 2.0, 0.5], [3.0, 1.5, 0.7]], &d)?,
        );
        let mut c = Tree::new();
        c.insert("b", Tensor::new(&[1.0f64, -2.0, 0.5], &d)?);
        c.insert(
            "w",
            Tensor::new(&[[-1.0f64, 0.5, 2.0], [1.5, -0.5, 1.0]], &d)?,
        );
        Ok(Self { a, c })
    }
}

impl Problem for Quadratic {
    fn start(&self) -> anyhow::Result<Tree> {
        Ok(self.c.map(|_, c| Ok(c.affine(-1.0, 0.5)?))?)
    }

    fn grad(&self, p: &Tree) -> anyhow::Result<Tree> {
        let diff = p.zip_map(&self.c, |_, p, c| Ok((p - c)?))?;
        Ok(diff.zip_map(&self.a, |_, d, a| Ok((d * a)?))?)
    }

    fn minimiser(&self) -> Vec<f64> {
        flat(&self.c).expect("flatten")
    }
}

/// `f(x, y) = (1 − x)² + 100·(y − x²)²` from the classic start (−1.2, 1).
struct Rosenbrock;

impl Problem for Rosenbrock {
    fn start(&self) -> anyhow::Result<Tree> {
        let mut t = Tree::new();
        t.insert("xy", Tensor::new(&[-1.2f64, 1.0], &Device::Cpu)?);
        Ok(t)
    }

    fn grad(&self, p: &Tree) -> anyhow::Result<Tree> {
        let v = p.get("xy").expect("xy").to_vec1::<f64>()?;
        let (x, y) = (v[0], v[1]);
        let g = [
            -2.0 * (1.0 - x) - 400.0 * x * (y - x * x),
            200.0 * (y - x * x),
        ];
        let mut t = Tree::new();
        t.insert("xy", Tensor::new(&g, &Device::Cpu)?);
        Ok(t)
    }

    fn minimiser(&self) -> Vec<f64> {
        vec![1.0, 1.0]
    }
}

fn flat(t: &Tree) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for (_, x) in t.iter() {
        out.extend(x.flatten_all()?.to_vec1::<f64>()?);
    }
    Ok(out)
}

/// Runs `tx` for `steps`, checking finiteness and shapes on the way; returns
/// the largest distance to the minimiser at the end.
fn minimise(problem: &dyn Problem, tx: &Boxed, steps: usize) -> anyhow::Result<f64> {
    let mut p = problem.start()?;
    let shapes: Vec<Vec<usize>> = p.iter().map(|(_, t)| t.dims().to_vec()).collect();
    let mut state = tx.init(&p)?;
    for _ in 0..steps {
        let (u, s) = tx.update(problem.grad(&p)?, state, &p)?;
        state = s;
        p = p.zip_map(&u, |_, p, u| Ok((p + u)?))?;
    }
    let now: Vec<Vec<usize>> = p.iter().map(|(_, t)| t.dims().to_vec()).collect();
    assert_eq!(now, shapes, "shapes changed");
    let values = flat(&p)?;
    assert!(values.iter().all(|v| v.is_finite()), "non-finite value");
    Ok(values
        .iter()
        .zip(problem.minimiser())
        .map(|(v, m)| (v - m).abs())
        .fold(0.0, f64::max))
}

/// Cosine decay from `lr` to 0 over `steps`: every optimizer gets a decaying rate,
/// so that those whose steps do not shrink with the gradient (sign-like Adam
/// steps, trust-ratio steps proportional to ‖w‖) still settle.
fn cosine(lr: f64, steps: usize) -> CosineDecay {
    CosineDecay::new(lr, 0.0, steps as u64).expect("schedule")
}

/// Builds an optimizer around a learning-rate schedule.
type Build = fn(CosineDecay) -> Boxed;

/// One row: (name, quadratic (lr, steps), Rosenbrock (lr, steps), builder).
type Row = (&'static str, (f64, usize), (f64, usize), Build);

fn table() -> Vec<Row> {
    vec![
        ("sgd", (0.3, 300), (1.5e-3, 20_000), |s| boxed(sgd(s))),
        ("momentum", (0.1, 300), (1e-3, 10_000), |s| {
            boxed(momentum(s, 0.9))
        }),
        ("nesterov", (0.1, 300), (1e-3, 10_000), |s| {
            boxed(nesterov(s, 0.9))
        }),
        ("adagrad", (1.0, 1000), (1.0, 20_000), |s| {
            boxed(adagrad(s, AdagradConfig::default()))
        }),
        ("rmsprop", (0.05, 2000), (0.01, 10_000), |s| {
            boxed(rmsprop(s, RmsConfig::default(), 0.0))
        }),
        ("rmsprop-centered", (0.05, 2000), (0.01, 10_000), |s| {
            boxed(rmsprop(
                s,
                RmsConfig {
                    centered: true,
                    ..RmsConfig::default()
                },
                0.9,
            ))
        }),
        ("adam", (0.1, 2000), (0.05, 10_000), |s| {
            boxed(adam(s, AdamConfig::default()))
        }),
        ("adamw", (0.1, 2000), (0.05, 10_000), |s| {
            boxed(adamw(s, AdamConfig::default(), 0.0, mask::all()))
        }),
        ("lars", (1.0, 2000), (1.0, 10_000), |s| {
            boxed(lars(
                s,
                LarsConfig {
                    eta: 0.01,
                    ..LarsConfig::default()
                },
            ))
        }),
        ("lamb", (0.05, 2000), (0.02, 10_000), |s| {
            boxed(lamb(s, LambConfig::default()))
        }),
        ("layerwise-momentum", (0.02, 2000), (0.005, 10_000), |s| {
            boxed(layerwise(
                momentum(s, 0.9),
                TrustRatioConfig::lamb(),
                mask::all(),
            ))
        }),
        (
            "layerwise-adam-bounded",
            (0.05, 2000),
            (0.02, 10_000),
            |s| {
                let r = TrustRatioConfig::lamb().with_bounds(Some(0.0), Some(10.0));
                boxed(layerwise(adam(s, AdamConfig::default()), r, mask::all()))
            },
        ),
    ]
}

#[test]
fn every_optimizer_minimises_a_quadratic_and_rosenbrock() -> anyhow::Result<()> {
    let quadratic = Quadratic::new()?;
    let mut failures = Vec::new();
    for (name, (q_lr, q_steps), (r_lr, r_steps), build) in table() {
        let q = minimise(&quadratic, &build(cosine(q_lr, q_steps)), q_steps)?;
        let r = minimise(&Rosenbrock, &build(cosine(r_lr, r_steps)), r_steps)?;
        println!("{name:>24}: quadratic {q:.2e}, rosenbrock {r:.2e}");
        if !(q < 1e-3 && r < 1e-2) {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "did not converge: {failures:?}");
    Ok(())
}
