//! A reader of the Prometheus text format, just enough for the tests.

/// Sum of the samples of metric `name` whose label set includes every pair of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    let mut matched = false;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(pair) => pair,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let found = parse_labels(label_text);
        if labels
            .iter()
            .all(|(k, v)| found.iter().any(|(fk, fv)| fk == k && fv == v))
        {
            matched = true;
            sum += value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("sample value of '{line}' is not a number"));
        }
    }
    // A labelled series appears once it is first counted, so an absent series reads as 0; but the
    // metric itself must exist, or a renamed metric would read as 0 everywhere.
    assert!(
        matched
            || text
                .lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
        "no metric {name} in /metrics"
    );
    sum
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        out.push((key.trim_start_matches(',').trim().to_string(), value));
        rest = &after[end..];
    }
    out
}
