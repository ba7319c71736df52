//! Pure helpers of `cargo xtask bench`: reading the examples' output, rendering Markdown tables,
//! dates. No I/O, so each is tested on literal strings.

/// The `key=value` pairs of the last line whose first word is `first` and which reports
/// `images_per_s`, as `bench_step` (`candle model=... images_per_s=...`) and
/// `bench_step_torch.py` (`torch model=...`) print it.
pub fn kv_line<'a>(output: &'a str, first: &str) -> Option<Vec<(&'a str, &'a str)>> {
    output
        .lines()
        .rev()
        .find(|line| line.split_whitespace().next() == Some(first) && line.contains(" images_per_s="))
        .map(|line| line.split_whitespace().filter_map(|word| word.split_once('=')).collect())
}

/// The number under `key` in `kv_line`'s pairs.
pub fn number(pairs: &[(&str, &str)], key: &str) -> Option<f64> {
    pairs.iter().find(|(k, _)| *k == key).and_then(|(_, v)| v.parse().ok())
}

/// The body rows of the first Markdown table in `output` whose header starts with the cell
/// `first`, each row split into trimmed cells.
pub fn markdown_rows(output: &str, first: &str) -> Vec<Vec<String>> {
    let cells = |line: &str| -> Vec<String> {
        let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
        inner.split('|').map(|cell| cell.trim().to_owned()).collect()
    };
    let mut lines = output.lines().skip_while(|line| {
        !(line.trim_start().starts_with('|') && cells(line).first().map(String::as_str) == Some(first))
    });
    if lines.next().is_none() {
        return Vec::new();
    }
    lines
        .skip_while(|line| line.trim_start().starts_with("|-") || line.trim_start().starts_with("|:"))
        .take_while(|line| line.trim_start().starts_with('|'))
        .map(cells)
        .collect()
}

/// A Markdown table; `right[i]` right-aligns column `i` (numbers), as in docs/performance*.md.
pub fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|", header.join(" | "));
    for i in 0..header.len() {
        out.push_str(if right.get(i).copied().unwrap_or(false) { "---:|" } else { "---|" });
    }
    out.push('\n');
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// The three load averages of a `/proc/loadavg` line.
pub fn load_averages(text: &str) -> Option<[f64; 3]> {
    let mut words = text.split_whitespace().map(str::parse::<f64>);
    Some([words.next()?.ok()?, words.next()?.ok()?, words.next()?.ok()?])
}

/// `(2026-11-28 23:20 UTC, 20261128T232000Z)` for seconds since the Unix epoch.
pub fn utc(secs: u64) -> (String, String) {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    // Howard Hinnant's days-to-civil, for days >= 0.
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (
        format!("{year}-{month:02}-{day:02} {h:02}:{m:02} UTC"),
        format!("{year}{month:02}{day:02}T{h:02}{m:02}{s:02}Z"),
    )
}

/// `4.0, 5.9` from a list of rates; `n/a` when empty.
pub fn list(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "n/a".to_owned();
    }
    values.iter().map(|v| format!("{v:.decimals$}")).collect::<Vec<_>>().join(", ")
}

/// The mean, `None` for an empty list.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The vector extensions among the first CPU's `flags` (x86) or `Features` (aarch64) in
/// `/proc/cpuinfo`, in a fixed order.
pub fn vector_flags(cpuinfo: &str) -> Vec<&'static str> {
    const WANTED: [&str; 8] =
        ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "asimd", "sve"];
    let line = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags") || l.starts_with("Features"))
        .and_then(|l| l.split_once(':'))
        .map_or("", |(_, v)| v);
    let present: Vec<&str> = line.split_whitespace().collect();
    WANTED.into_iter().filter(|f| present.contains(f)).collect()
}

/// What the Markdown says above a table.
pub struct Header {
    pub title: String,
    pub command: String,
    pub date: String,
    pub cpu: String,
    pub nproc: usize,
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
    pub git: String,
    /// The reference's versions, or why it did not run.
    pub reference: Result<String, String>,
    pub notes: Vec<String>,
}

/// The section to paste into docs/performance*.md: title, command, machine, load, versions,
/// notes, table.
pub fn markdown(h: &Header, table: &str) -> String {
    let load = |l: Option<[f64; 3]>| l.map_or("unknown".into(), |[one, ..]| format!("{one:.2}"));
    let mut out = format!(
        "## {}\n\n```sh\n{}\n```\n\n{}, {} ({} cores), 1-minute load {} before and {} after, git {}.\n",
        h.title,
        h.command,
        h.date,
        h.cpu,
        h.nproc,
        load(h.load_before),
        load(h.load_after),
        h.git
    );
    match &h.reference {
        Ok(versions) => out.push_str(&format!("Reference: {versions}.\n")),
        Err(why) => out.push_str(&format!("**Reference not run, ours alone**: {why}.\n")),
    }
    if h.load_before.is_some_and(|[one, ..]| one >= 1.0) {
        out.push_str(
            "**The machine was busy before the run (1-minute load of 1.0 or more): the figures are \
             depressed and noisy; rerun idle (`--wait-idle MINUTES`) before quoting them.**\n",
        );
    }
    for note in &h.notes {
        out.push_str(&format!("{note}.\n"));
    }
    out.push('\n');
    out.push_str(table);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANDLE: &str = "candle model=cifar-r18 batch=64 steps=3 threads=2 stock=false images_per_s=5.70 \
                          step_s=11.225 forward_s=3.1 backward_s=8.0 update_s=0.1 peak_rss_mib=1326";

    #[test]
    fn kv_line_finds_the_result_line_among_others() {
        let output = format!("warming up\ncandle says hello\n{CANDLE}\n");
        let pairs = kv_line(&output, "candle").expect("result line");
        assert_eq!(number(&pairs, "images_per_s"), Some(5.70));
        assert_eq!(number(&pairs, "peak_rss_mib"), Some(1326.0));
        assert_eq!(pairs.iter().find(|(k, _)| *k == "model").map(|(_, v)| *v), Some("cifar-r18"));
        assert_eq!(number(&pairs, "missing"), None);
        assert!(kv_line(&output, "torch").is_none());
        assert!(kv_line("candle model=x batch=2", "candle").is_none());
        assert!(kv_line("", "candle").is_none());
    }

    #[test]
    fn markdown_rows_reads_the_named_table_only() {
        let output = "load average before: 1\n\n| other | x |\n|---|---|\n| a | b |\n\n\
                      | preset | threads | ours (img/s) |\n|---|---:|---:|\n| CIFAR | 1 | 10229 |\n\
                      | default | 2 | 362 |\nload average after: 2\n";
        let rows = markdown_rows(output, "preset");
        assert_eq!(rows, [["CIFAR", "1", "10229"], ["default", "2", "362"]]);
        assert!(markdown_rows(output, "loader").is_empty());
        assert!(markdown_rows("| preset | threads |\n|---|---|\n", "preset").is_empty());
    }

    #[test]
    fn table_round_trips_through_markdown_rows() {
        let rows = vec![vec!["a".to_owned(), "1".to_owned()], vec!["b".to_owned(), "2".to_owned()]];
        let text = table(&["name", "n"], &[false, true], &rows);
        assert_eq!(text, "| name | n |\n|---|---:|\n| a | 1 |\n| b | 2 |\n");
        assert_eq!(markdown_rows(&text, "name"), rows);
    }

    #[test]
    fn vector_flags_pick_the_isa_extensions_in_order() {
        let x86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_tile fma avx512f avx512_bf16 bmi2\n";
        assert_eq!(vector_flags(x86), ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"]);
        assert_eq!(vector_flags("Features\t: fp asimd evtstrm sve\n"), ["asimd", "sve"]);
        assert!(vector_flags("").is_empty());
    }

    #[test]
    fn load_averages_parse_proc_loadavg() {
        assert_eq!(load_averages("2.68 1.64 1.81 3/412 12345\n"), Some([2.68, 1.64, 1.81]));
        assert_eq!(load_averages("2.68 x"), None);
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), ("1970-01-01 00:00 UTC".to_owned(), "19700101T000000Z".to_owned()));
        assert_eq!(utc(1_700_000_000), ("2023-11-14 22:13 UTC".to_owned(), "20231114T221320Z".to_owned()));
        // A leap day.
        assert_eq!(utc(1_709_208_000).0, "2024-02-29 12:00 UTC");
    }

    fn header() -> Header {
        Header {
            title: "One step".into(),
            command: "cargo xtask bench step".into(),
            date: "2026-11-29 01:11 UTC".into(),
            cpu: "AMD EPYC".into(),
            nproc: 2,
            load_before: Some([0.37, 1.0, 1.0]),
            load_after: Some([2.634, 1.0, 1.0]),
            git: "0f064e6a1e0d".into(),
            reference: Ok("torch 2.9.1".into()),
            notes: vec!["2 threads".into()],
        }
    }

    #[test]
    fn markdown_puts_machine_and_reference_above_the_table() {
        assert_eq!(
            markdown(&header(), "| a |\n|---|\n"),
            "## One step\n\n```sh\ncargo xtask bench step\n```\n\n2026-11-29 01:11 UTC, AMD EPYC (2 cores), \
             1-minute load 0.37 before and 2.63 after, git 0f064e6a1e0d.\nReference: torch 2.9.1.\n2 threads.\n\n\
             | a |\n|---|\n"
        );
    }

    #[test]
    fn markdown_says_when_the_reference_did_not_run_and_the_machine_was_busy() {
        let h = Header { reference: Err("no torch".into()), load_before: Some([2.5, 1.0, 1.0]), ..header() };
        let text = markdown(&h, "");
        assert!(text.contains("**Reference not run, ours alone**: no torch.\n"), "{text}");
        assert!(text.contains("**The machine was busy before the run"), "{text}");
    }

    #[test]
    fn list_and_mean() {
        assert_eq!(list(&[33.41, 32.2], 1), "33.4, 32.2");
        assert_eq!(list(&[], 1), "n/a");
        assert_eq!(mean(&[1.0, 2.0]), Some(1.5));
        assert_eq!(mean(&[]), None);
    }
}
