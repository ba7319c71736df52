//! `simsiam plot`, `simsiam neighbors` and `simsiam scatter` end to end, on generated fixtures:
//! metrics files, folders of solid-colour images (so a pixel's colour says which image landed
//! where) and embeddings whose neighbours are known.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle::{Device, Tensor};
use image::{Rgb, RgbImage};
use simsiam::figures::neighbors::QUERY_FRAME;
use simsiam::figures::{self, GridLayout, Metrics, PlotOptions};

mod common;
use common::{error_line, simsiam, succeed};

fn s(path: &Path) -> String {
    path.display().to_string()
}

/// The distinct colour of image `i`: never white, black or the query frame's red.
fn colour(i: usize) -> [u8; 3] {
    [(20 + 17 * i) as u8, (200 - 13 * i) as u8, ((60 + 29 * i) % 256) as u8]
}

/// `img_00.png`...: solid-colour images, some not square.
fn colour_folder(dir: &Path, n: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("mkdir");
    (0..n)
        .map(|i| {
            let name = format!("img_{i:02}.png");
            let (w, h) = if i % 4 == 1 { (24, 16) } else { (16, 16) };
            RgbImage::from_pixel(w, h, Rgb(colour(i))).save(dir.join(&name)).expect("write image");
            name
        })
        .collect()
}

/// Lightly's embeddings.csv.
fn write_csv(path: &Path, names: &[String], rows: &[Vec<f32>]) {
    let d = rows[0].len();
    let mut text = String::from("filenames");
    (0..d).for_each(|j| text.push_str(&format!(",embedding_{j}")));
    text.push_str(",labels\n");
    for (name, row) in names.iter().zip(rows) {
        text.push_str(name);
        row.iter().for_each(|v| text.push_str(&format!(",{v}")));
        text.push_str(",0\n");
    }
    std::fs::write(path, text).expect("write csv");
}

fn decode(path: &Path) -> RgbImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

/// Distinct colours and the variance of the grey level in a rectangle.
fn richness(image: &RgbImage, (x0, y0, w, h): (u32, u32, u32, u32)) -> (usize, f64) {
    let mut colours = HashSet::new();
    let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            let p = image.get_pixel(x, y).0;
            colours.insert(p);
            let grey = p.iter().map(|&c| f64::from(c)).sum::<f64>() / 3.0;
            (sum, sum2, n) = (sum + grey, sum2 + grey * grey, n + 1.0);
        }
    }
    (colours.len(), sum2 / n - (sum / n).powi(2))
}

fn count(image: &RgbImage, (x0, y0, w, h): (u32, u32, u32, u32), colour: [u8; 3]) -> usize {
    (y0..y0 + h)
        .flat_map(|y| (x0..x0 + w).map(move |x| (x, y)))
        .filter(|&(x, y)| image.get_pixel(x, y).0 == colour)
        .count()
}

fn quadrants(image: &RgbImage) -> [(u32, u32, u32, u32); 4] {
    let (w, h) = (image.width() / 2, image.height() / 2);
    [(0, 0, w, h), (w, 0, w, h), (0, h, w, h), (w, h, w, h)]
}

/// A metrics file as the trainer writes it: 4 epochs of 5 intervals, kNN after each epoch when
/// `knn`.
fn metrics_text(knn: bool) -> String {
    let mut out = String::new();
    let mut step = 0;
    for epoch in 0..4 {
        for _ in 0..5 {
            step += 3;
            let t = f64::from(step);
            out.push_str(&format!(
                "{{\"event\":\"step\",\"epoch\":{epoch},\"step\":{step},\"loss\":{},\"lr\":{},\"collapse\":{},\"images_per_s\":120.5}}\n",
                -0.2 - 0.6 * (1.0 - (-t / 20.0).exp()),
                0.06 * (1.0 + (std::f64::consts::PI * t / 60.0).cos()) / 2.0,
                0.7 * (-t / 15.0).exp()
            ));
        }
        let knn = if knn { format!(",\"knn_top1\":{}", 0.1 + 0.1 * f64::from(epoch)) } else { String::new() };
        out.push_str(&format!(
            "{{\"event\":\"epoch\",\"epoch\":{epoch},\"step\":{step},\"loss\":-0.5,\"lr\":0.03,\"collapse\":0.2,\"seconds\":1.5{knn}}}\n"
        ));
    }
    out
}

/// The line and dot colours of `simsiam plot`.
const LINE: [u8; 3] = [31, 119, 180];
const DOTS: [u8; 3] = [214, 39, 40];

#[test]
fn plot_draws_four_non_blank_panels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let metrics = tmp.path().join("metrics.jsonl");
    std::fs::write(&metrics, metrics_text(true)).expect("write metrics");
    let out = tmp.path().join("figs/plot.png");
    let stdout =
        succeed(&["plot", "--metrics", &s(&metrics), "--out", &s(&out), "--width", "800", "--height", "600"]);
    assert!(stdout.contains("plot.png"), "{stdout}");
    let image = decode(&out);
    assert_eq!(image.dimensions(), (800, 600));
    for (i, q) in quadrants(&image).into_iter().enumerate() {
        let (colours, variance) = richness(&image, q);
        assert!(colours >= 4 && variance > 10.0, "panel {i}: {colours} colours, variance {variance}");
        assert!(count(&image, q, DOTS) > 20, "panel {i} has no epoch dots");
        assert!(count(&image, q, LINE) > 50, "panel {i} has no line");
    }
}

#[test]
fn plot_without_knn_or_text_leaves_an_empty_panel() -> anyhow::Result<()> {
    let metrics = Metrics::parse(&metrics_text(false))?;
    for text in [false, true] {
        let image = figures::plot_metrics(&metrics, &PlotOptions { width: 600, height: 400, text })?;
        assert_eq!(image.dimensions(), (600, 400));
        let q = quadrants(&image);
        for (i, &panel) in q[..3].iter().enumerate() {
            assert!(count(&image, panel, LINE) > 30, "text {text}: panel {i} has no line");
        }
        assert_eq!(count(&image, q[3], LINE) + count(&image, q[3], DOTS), 0, "the kNN panel is not empty");
        let (colours, _) = richness(&image, q[3]);
        assert!(colours >= 2, "the empty kNN panel has no frame");
    }
    // And the command accepts such a file.
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("metrics.jsonl");
    std::fs::write(&path, metrics_text(false))?;
    succeed(&["plot", "--metrics", &s(&path), "--out", &s(&tmp.path().join("p.png"))]);
    Ok(())
}

#[test]
fn plot_draws_the_online_probe_beside_the_knn_curve() -> anyhow::Result<()> {
    const PROBE_TRAIN: [u8; 3] = [255, 127, 14];
    const PROBE_TEST: [u8; 3] = [44, 160, 44];
    let with_probe: String = metrics_text(true)
        .lines()
        .map(|line| match line.strip_suffix('}') {
            Some(epoch) if line.contains(r#""event":"epoch""#) => {
                format!("{epoch},\"probe_train_top1\":0.4,\"probe_test_top1\":0.35}}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let metrics = Metrics::parse(&with_probe)?;
    assert_eq!(metrics.epochs[3].probe_test_top1, Some(0.35));
    let image = figures::plot_metrics(&metrics, &PlotOptions { width: 800, height: 600, text: false })?;
    let q = quadrants(&image);
    for (name, colour) in [("train", PROBE_TRAIN), ("test", PROBE_TEST)] {
        assert!(count(&image, q[3], colour) > 50, "no probe {name} curve in the accuracy panel");
        assert_eq!(count(&image, q[0], colour), 0, "the probe {name} curve is in the loss panel");
    }
    assert!(count(&image, q[3], DOTS) > 20 && count(&image, q[3], LINE) > 50, "the kNN curve is still there");
    // Without a probe the panel has none of its colours.
    let plain = figures::plot_metrics(
        &Metrics::parse(&metrics_text(true))?,
        &PlotOptions { width: 800, height: 600, text: false },
    )?;
    assert_eq!(count(&plain, q[3], PROBE_TRAIN) + count(&plain, q[3], PROBE_TEST), 0);
    Ok(())
}

/// 12 images; row 3 is the query along (1, 0, 0); rows 7, 2, 10, 0, 5, 11, 1, 8 lie at 5, 10,
/// ..., 40 degrees from it (at various lengths, which normalisation removes), the rest beyond
/// 90 degrees.
const QUERY: usize = 3;
const EXPECTED: [usize; 8] = [7, 2, 10, 0, 5, 11, 1, 8];

fn known_neighbours(dir: &Path) -> (PathBuf, Vec<String>, Vec<Vec<f32>>) {
    let images = dir.join("images");
    let names = colour_folder(&images, 12);
    let mut angle = HashMap::from([(QUERY, 0.0f64), (4, 100.0), (6, 120.0), (9, 140.0)]);
    for (k, &row) in EXPECTED.iter().enumerate() {
        angle.insert(row, 5.0 * (k + 1) as f64);
    }
    let rows = (0..12)
        .map(|i| {
            let (a, len) = (angle[&i].to_radians(), 1.0 + i as f64);
            vec![(len * a.cos()) as f32, (len * a.sin()) as f32, 0.0]
        })
        .collect();
    (images, names, rows)
}

/// The grid layout matching the image's size: with captions when a font was found.
fn layout_of(image: &RgbImage, thumb: u32, queries: usize) -> GridLayout {
    [true, false]
        .into_iter()
        .map(|captions| GridLayout::new(thumb, captions))
        .find(|l| l.size(queries) == image.dimensions())
        .unwrap_or_else(|| panic!("no layout of {queries} queries is {:?}", image.dimensions()))
}

fn centre(image: &RgbImage, (x, y, w, h): (u32, u32, u32, u32)) -> [u8; 3] {
    image.get_pixel(x + w / 2, y + h / 2).0
}

#[test]
fn neighbors_grid_puts_the_query_first_and_neighbours_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (images, names, rows) = known_neighbours(tmp.path());
    let csv = tmp.path().join("embeddings.csv");
    write_csv(&csv, &names, &rows);
    let out = tmp.path().join("nn.png");
    let data = [
        "--set".to_owned(),
        "data.dataset=folder".into(),
        "--set".into(),
        format!("data.path={}", images.display()),
    ];
    let mut args: Vec<String> =
        ["neighbors", "--embeddings", &s(&csv), "--query", "img_03.png", "--thumb-size", "32"]
            .map(str::to_owned)
            .to_vec();
    args.extend(data.iter().cloned());
    args.extend(["--out".to_owned(), s(&out)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    succeed(&args);
    let image = decode(&out);
    let layout = layout_of(&image, 32, 1);
    let cells: Vec<usize> = std::iter::once(QUERY).chain(EXPECTED).collect();
    for (cell, &row) in cells.iter().enumerate() {
        let got = centre(&image, layout.thumb_rect(0, cell));
        assert_eq!(got, colour(row), "cell {cell} should show image {row}");
    }
    // The red frame marks the query cell only.
    let (x, y, _, _) = layout.thumb_rect(0, 0);
    assert_eq!(image.get_pixel(x - 1, y - 1).0, QUERY_FRAME);
    let (x, y, _, _) = layout.thumb_rect(0, 1);
    assert_eq!(image.get_pixel(x - 1, y - 1).0, [255, 255, 255]);

    // The safetensors embeddings give the same figure; a row index names the same query.
    let st = tmp.path().join("embeddings.safetensors");
    let tensor = Tensor::from_vec(rows.concat(), (12, 3), &Device::Cpu).expect("tensor");
    simsiam_train::write_embeddings_safetensors(&st, &names, &tensor, &[None; 12]).expect("write");
    let out2 = tmp.path().join("nn2.png");
    let mut args: Vec<String> = ["neighbors", "--embeddings", &s(&st), "--query", "3", "--thumb-size", "32"]
        .map(str::to_owned)
        .to_vec();
    args.extend(data.iter().cloned());
    args.extend(["--out".to_owned(), s(&out2)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    succeed(&args);
    assert_eq!(std::fs::read(&out2).expect("nn2"), std::fs::read(&out).expect("nn"));
}

#[test]
fn several_queries_stack_or_make_one_file_each() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (images, names, rows) = known_neighbours(tmp.path());
    let csv = tmp.path().join("e.csv");
    write_csv(&csv, &names, &rows);
    let path_set = format!("data.path={}", images.display());
    let base = ["neighbors", "--embeddings", &s(&csv), "--set", "data.dataset=folder", "--set", &path_set];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        succeed(&args)
    };
    let stacked = tmp.path().join("stacked.png");
    run(&["--query", "img_03.png", "--query", "5", "--stack", "--thumb-size", "24", "--out", &s(&stacked)]);
    let image = decode(&stacked);
    let layout = layout_of(&image, 24, 2);
    assert_eq!(centre(&image, layout.thumb_rect(0, 0)), colour(3));
    assert_eq!(centre(&image, layout.thumb_rect(1, 0)), colour(5));
    assert_eq!(centre(&image, layout.thumb_rect(0, 1)), colour(EXPECTED[0]));

    let split = tmp.path().join("q.png");
    let stdout = run(&["--query", "img_03.png", "--query", "5", "--thumb-size", "24", "--out", &s(&split)]);
    assert!(!split.exists(), "several queries without --stack write one file each");
    for row in [3, 5] {
        let file = tmp.path().join(format!("q_{row}.png"));
        assert!(stdout.contains(&s(&file)), "{stdout}");
        let image = decode(&file);
        assert_eq!(centre(&image, layout_of(&image, 24, 1).thumb_rect(0, 0)), colour(row));
    }

    // Random queries are seeded: the same seed, the same figure.
    let (a, b) = (tmp.path().join("a.png"), tmp.path().join("b.png"));
    run(&["--num-queries", "2", "--stack", "--seed", "4", "--out", &s(&a)]);
    run(&["--num-queries", "2", "--stack", "--seed", "4", "--out", &s(&b)]);
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
}

#[test]
fn scatter_draws_whole_thumbnails_of_a_seeded_subset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let images = tmp.path().join("images");
    let names = colour_folder(&images, 12);
    // Three clusters in 4-D.
    let rows: Vec<Vec<f32>> = (0..12)
        .map(|i| {
            let c = (i % 3) as f32;
            vec![c * 2.0 + 0.1 * i as f32, -c, 0.05 * (i as f32).sin(), 1.0]
        })
        .collect();
    let csv = tmp.path().join("e.csv");
    write_csv(&csv, &names, &rows);
    let path_set = format!("data.path={}", images.display());
    let scatter = |out: &Path| {
        succeed(&[
            "scatter",
            "--embeddings",
            &s(&csv),
            "--set",
            "data.dataset=folder",
            "--set",
            &path_set,
            "--num-images",
            "6",
            "--min-distance",
            "0.2",
            "--thumb-size",
            "24",
            "--size",
            "320",
            "--seed",
            "1",
            "--out",
            &s(out),
        ])
    };
    let out = tmp.path().join("scatter.png");
    let stdout = scatter(&out);
    let shown: usize = stdout
        .split('(')
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no thumbnail count in `{stdout}`"));
    assert!((2..=6).contains(&shown), "{shown} thumbnails");
    let image = decode(&out);
    assert_eq!(image.dimensions(), (320, 320));
    let whole = 24 * 16 * 9 / 10; // the smaller (24x16) thumbnails, nearly unhidden
    let full = (0..12).filter(|&i| count(&image, (0, 0, 320, 320), colour(i)) >= whole).count();
    assert_eq!(full, shown, "thumbnails drawn whole");
    let (colours, variance) = richness(&image, (0, 0, 320, 320));
    assert!(colours > 8 && variance > 10.0);
    let again = tmp.path().join("again.png");
    scatter(&again);
    assert_eq!(std::fs::read(&again).expect("again"), std::fs::read(&out).expect("out"), "not deterministic");
}

#[test]
fn embeddings_load_back_from_csv_and_safetensors() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let names: Vec<String> = ["a/1.png", "with,comma.png", "with \"quotes\".jpg"].map(str::to_owned).to_vec();
    let rows = [[1.0f32 / 3.0, -2.5e-8, 12345.678], [0.0, -0.0, 1e30], [f32::MIN_POSITIVE, 7.0, -1.5]];
    let tensor = Tensor::from_vec(rows.concat(), (3, 3), &Device::Cpu)?;
    let labels = [Some(2), None, Some(0)];
    let (csv, st) = (tmp.path().join("e.csv"), tmp.path().join("e.safetensors"));
    simsiam_train::write_embeddings_csv(&csv, &names, &tensor, &labels)?;
    simsiam_train::write_embeddings_safetensors(&st, &names, &tensor, &labels)?;
    let (from_csv, from_st) = (figures::read_embeddings(&csv)?, figures::read_embeddings(&st)?);
    for table in [&from_csv, &from_st] {
        assert_eq!(table.names, names);
        assert_eq!(table.dim, 3);
        let bits: Vec<u32> = table.values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, rows.concat().iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
    assert_eq!(from_st.labels, labels);
    assert_eq!(from_csv.labels, [Some(2), Some(0), Some(0)], "Lightly writes 0 for no label");
    Ok(())
}

#[test]
fn bad_figure_input_fails_with_one_clear_line_and_keeps_the_output() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out.png");
    let previous = b"an earlier figure".to_vec();
    std::fs::write(&out, &previous).expect("write out");
    let (o, t) = (s(&out), tmp.path());

    let bad_line = t.join("bad/metrics.jsonl");
    std::fs::create_dir_all(t.join("bad")).expect("mkdir");
    let mut text = metrics_text(true);
    text.insert_str(text.find('\n').expect("a line") + 1, "{\"event\":\"step\",\"epoch\":0,\n");
    std::fs::write(&bad_line, text).expect("write");
    let empty = t.join("empty.jsonl");
    std::fs::write(&empty, "").expect("write");
    let metrics = t.join("metrics.jsonl");
    std::fs::write(&metrics, metrics_text(true)).expect("write");

    let images = t.join("images");
    let names = colour_folder(&images, 12);
    let rows: Vec<Vec<f32>> = (0..12).map(|i| vec![i as f32, 1.0]).collect();
    let short = t.join("e10.csv");
    write_csv(&short, &names[..10], &rows[..10]);
    let renamed = t.join("renamed.csv");
    let other: Vec<String> = (0..12).map(|i| format!("other_{i}.png")).collect();
    write_csv(&renamed, &other, &rows);
    let good = t.join("good.csv");
    write_csv(&good, &names, &rows);
    let malformed = t.join("malformed.csv");
    std::fs::write(&malformed, "filenames,embedding_0,labels\nimg_00.png,zero,0\n").expect("write");
    let not_a_font = t.join("font.ttf");
    std::fs::write(&not_a_font, "plain text").expect("write");

    let path_set = format!("data.path={}", images.display());
    let data = ["--set", "data.dataset=folder", "--set", path_set.as_str()];
    let with_data = |command: &str, embeddings: &Path, extra: &[&str]| -> Vec<String> {
        let mut args =
            vec![command.to_owned(), "--embeddings".into(), s(embeddings), "--out".into(), o.clone()];
        args.extend(data.iter().chain(extra).map(|a| a.to_string()));
        args
    };
    let owned = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (owned(&["plot", "--metrics", &s(&t.join("missing.jsonl")), "--out", &o]), vec!["missing.jsonl"]),
        (owned(&["plot", "--metrics", &s(&bad_line), "--out", &o]), vec!["bad/metrics.jsonl", "line 2"]),
        (
            owned(&["plot", "--metrics", &s(&empty), "--out", &o]),
            vec!["empty.jsonl", "no step or epoch records"],
        ),
        (owned(&["plot", "--metrics", &s(&metrics), "--out", &o, "--width", "0"]), vec!["0x900 pixels"]),
        (with_data("neighbors", &short, &[]), vec!["e10.csv", "10 embeddings", "12 images"]),
        (with_data("scatter", &short, &[]), vec!["e10.csv", "10 embeddings", "12 images"]),
        (
            with_data("neighbors", &renamed, &["--query", "0"]),
            vec!["renamed.csv", "other_0.png", "another dataset"],
        ),
        (with_data("neighbors", &good, &["--query", "nope.png"]), vec!["good.csv", "`nope.png`"]),
        (with_data("neighbors", &good, &["--query", "12"]), vec!["good.csv", "below 12"]),
        (with_data("neighbors", &malformed, &[]), vec!["malformed.csv", "line 2"]),
        (with_data("neighbors", &t.join("none.csv"), &[]), vec!["none.csv"]),
        (with_data("neighbors", &good, &["--thumb-size", "2"]), vec!["thumbnail size 2"]),
        (with_data("scatter", &good, &["--thumb-size", "900"]), vec!["thumbnail size 900"]),
        (with_data("scatter", &good, &["--font", &s(&not_a_font)]), vec!["font.ttf", "not a TrueType"]),
        (
            with_data("scatter", &good, &["--set", "data.path=/nonexistent/images"]),
            vec!["/nonexistent/images"],
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = error_line(&simsiam(&args));
        for e in expected {
            assert!(line.contains(e), "simsiam {args:?}: expected `{e}` in `{line}`");
        }
        assert_eq!(std::fs::read(&out).expect("out"), previous, "simsiam {args:?} touched the output");
    }
}
