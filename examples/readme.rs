//! The library example of the top-level README.md, compiled and run: `cargo test -p simsiam
//! --example readme` checks that the README shows exactly these lines and that they run.
//!
//! ```sh
//! cargo run --release --example readme
//! ```

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use simsiam_loss::{NegativeCosineSimilarity, symmetric_loss};
use simsiam_models::{PredictionHeadConfig, ProjectionHeadConfig, ResNetConfig, SimSiam, Stem};

fn main() -> anyhow::Result<()> {
    // README: begin
    let (dev, varmap) = (Device::Cpu, VarMap::new());
    let vb = simsiam_models::seeded_var_builder(&varmap, 42, DType::F32, &dev);
    let backbone = ResNetConfig::resnet18(Stem::Cifar).init(vb.pp("backbone"))?; // f
    let projection = ProjectionHeadConfig::new(512, 2048, 2048); // g
    let prediction = PredictionHeadConfig::new(2048, 512, 2048); // h
    let model = SimSiam::new(backbone, &projection, &prediction, vb)?;
    let x0 = Tensor::randn(0f32, 1., (8, 3, 32, 32), &dev)?; // two augmented views of 8 images
    let x1 = Tensor::randn(0f32, 1., (8, 3, 32, 32), &dev)?;
    let out = model.forward_views(&x0, &x1, true)?; // z0, z1 come back detached: the stop-gradient
    let loss = symmetric_loss(&NegativeCosineSimilarity::default(), &out.p0, &out.z1, &out.p1, &out.z0)?;
    let grads = loss.backward()?; // for simsiam_train::Sgd::step(&grads)
    // README: end

    let vars = varmap.data().lock().map_err(|_| anyhow::anyhow!("poisoned VarMap"))?;
    let with_grad = vars.values().filter(|v| grads.get(v.as_tensor()).is_some()).count();
    println!(
        "loss {:.4}; {with_grad} of {} variables have a gradient (the rest are BatchNorm running statistics)",
        loss.to_scalar::<f32>()?,
        vars.len()
    );
    anyhow::ensure!(with_grad > 0 && with_grad < vars.len(), "unexpected gradients");
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The lines between the markers of `main`, as the README's "A library example" shows them
    /// (with the `use` lines above them).
    #[test]
    fn the_readme_shows_this_example() {
        let readme = include_str!("../README.md");
        let block = readme
            .split("## A library example")
            .nth(1)
            .and_then(|s| s.split("```rust\n").nth(1))
            .and_then(|s| s.split("```").next())
            .expect("README.md has a ```rust block under `## A library example`");
        let source = include_str!("readme.rs");
        let body = source
            .split("// README: begin")
            .nth(1)
            .and_then(|s| s.split("// README: end").next())
            .expect("markers in main");
        let uses = source.lines().filter(|l| l.starts_with("use "));
        let expected: Vec<&str> = uses.chain(body.lines().map(str::trim)).filter(|l| !l.is_empty()).collect();
        let shown: Vec<&str> = block.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(shown, expected, "README.md's library example and examples/readme.rs differ");
    }

    #[test]
    fn the_example_runs() {
        super::main().expect("the README example runs");
    }
}
