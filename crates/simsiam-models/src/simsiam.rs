//! The SimSiam model: a backbone, a projection MLP and a prediction MLP (SimSiam paper,
//! Section 3 and Algorithm 1).

use candle::backprop::GradStore;
use candle::{ModuleT, Result, Tensor, Var};
use candle_nn::VarBuilder;

use crate::backbone::BackboneTape;
use crate::{Backbone, PredictionHead, PredictionHeadConfig, ProjectionHead, ProjectionHeadConfig};

/// The outputs of one view: its backbone features `f`, its projection `z`, detached (the
/// stop-gradient), and its prediction `p`.
#[derive(Debug, Clone)]
pub struct ViewOutput {
    /// The backbone features `f(x)`, differentiable (detach them to read them without training
    /// the backbone, as an online linear probe does).
    pub f: Tensor,
    /// The projection `z = g(f(x))`, detached from the graph.
    pub z: Tensor,
    /// The prediction `p = h(z)`, differentiable.
    pub p: Tensor,
}

/// The outputs of two views, ready for `simsiam_loss::symmetric_loss(p0, z1, p1, z0)`.
#[derive(Debug, Clone)]
pub struct TwoViewOutput {
    /// Backbone features of the first view, differentiable.
    pub f0: Tensor,
    /// Backbone features of the second view, differentiable.
    pub f1: Tensor,
    /// Projection of the first view, detached.
    pub z0: Tensor,
    /// Projection of the second view, detached.
    pub z1: Tensor,
    /// Prediction of the first view.
    pub p0: Tensor,
    /// Prediction of the second view.
    pub p1: Tensor,
}

/// SimSiam: `f` (any [`Backbone`]), projection `g` and prediction `h`, with parameter names
/// `backbone.*`, `projection_head.*` and `prediction_head.*`.
#[derive(Debug, Clone)]
pub struct SimSiam<B> {
    backbone: B,
    projection_head: ProjectionHead,
    prediction_head: PredictionHead,
    output_dim: usize,
}

impl<B: Backbone> SimSiam<B> {
    /// Wraps `backbone`, building the heads under `vb.pp("projection_head")` and
    /// `vb.pp("prediction_head")`. The projection head's input must be the backbone's feature
    /// dimension and the prediction head must map `z` to `z`'s dimension.
    pub fn new(
        backbone: B,
        projection: &ProjectionHeadConfig,
        prediction: &PredictionHeadConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        if projection.input_dim != backbone.feature_dim() {
            candle::bail!(
                "projection head input {} does not match the backbone's {} features",
                projection.input_dim,
                backbone.feature_dim()
            );
        }
        if prediction.input_dim != projection.output_dim || prediction.output_dim != projection.output_dim {
            candle::bail!(
                "prediction head {}->{} must map the projection's {} dimensions to themselves",
                prediction.input_dim,
                prediction.output_dim,
                projection.output_dim
            );
        }
        Ok(Self {
            backbone,
            projection_head: projection.init(vb.pp("projection_head"))?,
            prediction_head: prediction.init(vb.pp("prediction_head"))?,
            output_dim: projection.output_dim,
        })
    }

    /// The backbone, for feature extraction and evaluation.
    pub fn backbone(&self) -> &B {
        &self.backbone
    }

    /// The dimension of `z` and `p`.
    pub fn output_dim(&self) -> usize {
        self.output_dim
    }

    /// The projection head `g`.
    pub fn projection_head(&self) -> &ProjectionHead {
        &self.projection_head
    }

    /// The prediction head `h`.
    pub fn prediction_head(&self) -> &PredictionHead {
        &self.prediction_head
    }

    /// One view through `f`, `g` and `h`; as Lightly's example, `z` comes back detached.
    ///
    /// # Shapes
    /// - `x`: `[batch, 3, h, w]`
    /// - returns `f`, `[batch, feature_dim]`, and `z` and `p`, each `[batch, projection
    ///   output_dim]`
    pub fn forward_view(&self, x: &Tensor, train: bool) -> Result<ViewOutput> {
        self.heads(self.backbone.forward_t(x, train)?, train)
    }

    /// `z` and `p` from the features `f`.
    fn heads(&self, f: Tensor, train: bool) -> Result<ViewOutput> {
        let z = self.projection_head.forward_t(&f, train)?;
        let p = self.prediction_head.forward_t(&z, train)?;
        Ok(ViewOutput { f, z: z.detach(), p })
    }

    /// Two views, each in its own forward pass (so each has its own batch statistics, as in
    /// the paper's Algorithm 1 and Lightly's example).
    ///
    /// # Shapes
    /// - `x0`, `x1`: `[batch, 3, h, w]`
    /// - returns `f0`, `f1`, each `[batch, feature_dim]`, and `z0`, `z1`, `p0`, `p1`, each
    ///   `[batch, projection output_dim]`
    pub fn forward_views(&self, x0: &Tensor, x1: &Tensor, train: bool) -> Result<TwoViewOutput> {
        let v0 = self.forward_view(x0, train)?;
        let v1 = self.forward_view(x1, train)?;
        Ok(TwoViewOutput::new(v0, v1))
    }

    /// [`Self::forward_views`] in training mode for a training step, whose gradients come
    /// from [`TrainingPass::backward`]: where the backbone has its own backward pass
    /// ([`Backbone::forward_taped`], [`crate::ResNet`] on the CPU), its features enter
    /// candle's graph as leaf variables and that pass carries their gradients through it. The
    /// outputs and the gradients are those of `forward_views(x0, x1, true)` and
    /// `loss.backward()`.
    ///
    /// # Shapes
    /// As [`Self::forward_views`].
    pub fn forward_views_train(&self, x0: &Tensor, x1: &Tensor) -> Result<TrainingPass<'_>> {
        let mut tapes = Vec::new();
        let v0 = self.forward_view_train(x0, &mut tapes)?;
        let v1 = self.forward_view_train(x1, &mut tapes)?;
        Ok(TrainingPass { out: TwoViewOutput::new(v0, v1), tapes })
    }

    fn forward_view_train<'a>(&'a self, x: &Tensor, tapes: &mut Vec<Taped<'a>>) -> Result<ViewOutput> {
        let Some((f, tape)) = self.backbone.forward_taped(x)? else {
            return self.forward_view(x, true);
        };
        let f = Var::from_tensor(&f)?;
        let out = self.heads(f.as_tensor().clone(), true)?;
        tapes.push((f, tape));
        Ok(out)
    }
}

impl TwoViewOutput {
    fn new(v0: ViewOutput, v1: ViewOutput) -> Self {
        Self { f0: v0.f, f1: v1.f, z0: v0.z, z1: v1.z, p0: v0.p, p1: v1.p }
    }
}

/// A backbone's taped pass and the leaf variable its features became.
type Taped<'a> = (Var, Box<dyn BackboneTape + 'a>);

/// The forward pass of a training step ([`SimSiam::forward_views_train`]) and what its
/// backward pass needs.
pub struct TrainingPass<'a> {
    /// The two views' outputs, for the loss.
    pub out: TwoViewOutput,
    tapes: Vec<Taped<'a>>,
}

impl TrainingPass<'_> {
    /// Whether the backbone runs its own backward pass (else candle's autograd does it all).
    pub fn taped(&self) -> bool {
        !self.tapes.is_empty()
    }

    /// The gradients of `loss`, computed from [`Self::out`], with respect to every variable
    /// it depends on: candle's autograd through the heads (and anything else in `loss`), then
    /// the backbone's own backward pass from its features' gradients.
    pub fn backward(self, loss: &Tensor) -> Result<GradStore> {
        let mut grads = loss.backward()?;
        for (f, tape) in self.tapes.into_iter().rev() {
            // Features the loss does not depend on give the backbone no gradient, as in candle.
            if let Some(grad) = grads.remove(f.as_tensor()) {
                tape.backward(&grad, &mut grads)?;
            }
        }
        Ok(grads)
    }
}
