//! The page's tuner (`Tuner::deferring`, src/gpu/deferred_tuning.rs), run natively: it measures
//! only inside the tuning windows that `Trainer::advance` opens around a dry run of the training
//! shapes before the first step and of the evaluation's before the first evaluation, so every
//! shape the run uses has its choice before its first call. Held to:
//! - the run then computes exactly what a run whose choices come from the cache computes (the
//!   native tuner given the stored choices: nothing measured), so the dry run touches nothing
//!   and the choices apply from the first step;
//! - a page that stored the choices (`to_json` / `merge_json`, the browser's storage) measures
//!   nothing and repeats the run exactly;
//! - outside a window, a shape without a choice takes the static rule and is not measured.
//!
//! CI also runs this file on a device opened with the web's limits (`WGSL_CNN_WEB_LIMITS=1`),
//! where timestamps come from pass boundaries only, as in a browser.

use wgsl_cnn::backend::Backend;
use wgsl_cnn::checkpoint::TensorData;
use wgsl_cnn::gpu::autotune::{Choice, Mode, Tuner};
use wgsl_cnn::gpu::{AdapterChoice, Gpu};
use wgsl_cnn::model::state::state_dict;
use wgsl_cnn::train::{model_for, Event, TrainConfig, Trainer};

/// What one run did: its log lines, kernel lines, the choices it used and the parameters after.
struct Run {
    lines: Vec<String>,
    /// Each kernel line with the number of log lines before it.
    kernels: Vec<(usize, String)>,
    used: Vec<Choice>,
    params: Vec<(String, Vec<u64>)>,
    stored: String,
}

fn train(tuner: impl FnOnce(&wgpu::AdapterInfo) -> Tuner) -> Run {
    let mut be = Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    be.ctx.set_tuner(tuner(&be.ctx.info));
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    // 200 images in batches of 64: the epoch ends with a batch of 8, a shape of its own.
    let cfg = TrainConfig { epochs: 1, batch_size: 64, limit_train: Some(200), log_every: 1, seed: 5, ..TrainConfig::default() };
    let (model, start) = model_for(&mut be, &data, &cfg).unwrap();
    let mut trainer = Trainer::new(&mut be, model, start, &data, &cfg).unwrap();
    let (mut lines, mut kernels) = (Vec::new(), Vec::new());
    while !trainer.done() {
        for e in pollster::block_on(trainer.advance(&mut be, 2)).unwrap() {
            match e {
                Event::Kernel(k) => kernels.push((lines.len(), k)),
                e => lines.push(e.line().unwrap()),
            }
        }
    }
    let params = pollster::block_on(state_dict(&mut be, &trainer.model)).into_iter().map(|t| (t.name.clone(), bits(&t.data))).collect();
    let tuner = be.ctx.tuner().unwrap();
    Run { lines, kernels, used: tuner.used(), params, stored: tuner.to_json() }
}

/// A tensor's values as bit patterns (equal bits, not merely equal values).
fn bits(d: &TensorData) -> Vec<u64> {
    match d {
        TensorData::F32(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as u64).collect(),
    }
}

#[test]
fn a_deferring_tuner_chooses_before_the_first_step_and_the_run_repeats() {
    let page = train(|info| Tuner::new(Mode::Cached, None, info).deferring());
    assert_eq!(page.lines.len(), 5, "4 loss lines and the accuracy: {:#?}", page.lines);
    // conv2d and matmul shapes of the batches of 64 and 8 and the eval batch, all measured
    // in the window and reported before the first loss line.
    assert!(page.used.len() >= 6 && page.used.iter().all(|c| c.measured), "{:#?}", page.used);
    assert_eq!(page.kernels.len(), page.used.len(), "{:#?}", page.kernels);
    // The training shapes' before the first line, the evaluation's before the accuracy (as
    // the native tuner reports them: at their first use).
    let at_use = |kernels: &[(usize, String)]| kernels.iter().all(|(before, k)| if k.split(' ').nth(1).is_some_and(|shape| shape.starts_with("1000×")) { *before == 4 } else { *before == 0 });
    assert!(at_use(&page.kernels), "{:#?}", page.kernels);
    for batch in ["64", "8", "1000"] {
        assert!(page.used.iter().any(|c| c.key.split(|ch: char| !ch.is_ascii_digit()).any(|n| n == batch)), "no choice for batch {batch}: {:#?}", page.used);
    }

    // The native tuner given the stored choices measures nothing and computes the same run.
    let native = train(|info| {
        let t = Tuner::new(Mode::Cached, None, info);
        assert_eq!(t.merge_json("the page's choices", &page.stored).unwrap(), page.used.len());
        t
    });
    assert!(native.used.iter().all(|c| !c.measured), "{:#?}", native.used);
    assert_eq!(native.lines, page.lines);
    assert!(native.params == page.params, "the parameters after the run differ");

    // So does a page that stored them.
    let again = train(|info| {
        let t = Tuner::new(Mode::Cached, None, info).deferring();
        t.merge_json("the page's choices", &page.stored).unwrap();
        t
    });
    assert!(again.used.iter().all(|c| !c.measured) && again.used.len() == page.used.len(), "{:#?}", again.used);
    assert!(at_use(&again.kernels), "{:#?}", again.kernels);
    assert_eq!(again.lines, page.lines);
    assert!(again.params == page.params, "the parameters after the run differ");
}

#[test]
fn stored_choices_of_another_build_are_ignored_and_bad_ones_refused() {
    let be = Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    let t = Tuner::new(Mode::Cached, None, &be.ctx.info).deferring();
    assert!(t.storage_name().starts_with("autotune-") && t.storage_name().len() == "autotune-".len() + 16);
    let doc = t.to_json();
    let other = doc.replace("\"wgsl_cnn\": \"", "\"wgsl_cnn\": \"0.0.0-other-");
    assert_ne!(doc, other);
    assert_eq!(t.merge_json("stored", &other).unwrap(), 0);
    let e = t.merge_json("the browser's storage", "{\"choices\": [tru").unwrap_err();
    assert!(format!("{e:#}").contains("the browser's storage: not JSON"), "{e:#}");
}

#[test]
fn outside_a_window_a_deferring_tuner_takes_the_rule_and_measures_nothing() {
    let mut be = Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    be.ctx.set_tuner(Tuner::new(Mode::Cached, None, &be.ctx.info).deferring());
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    let cfg = TrainConfig { epochs: 1, batch_size: 50, limit_train: Some(100), ..TrainConfig::default() };
    let (mut model, _) = model_for(&mut be, &data, &cfg).unwrap();
    let before = be.ctx.dispatches.get();
    let (correct, n) = pollster::block_on(wgsl_cnn::train::evaluate_split(&mut be, &mut model, &data.test));
    assert!(n == 1000 && correct <= 1000);
    assert!(be.ctx.dispatches.get() > before);
    assert!(be.ctx.tuner().unwrap().used().is_empty(), "{:#?}", be.ctx.tuner().unwrap().used());
    // And a window with nothing new in it closes with nothing to report.
    assert!(be.begin_tuning());
    assert!(pollster::block_on(be.end_tuning()).is_empty());
}
