//! Charts drawn on the server: the geometry of simple bar charts (pixels,
//! labels, tooltips) as plain data, which `templates/dashboard/chart.html`
//! writes out as SVG elements with askama's escaping, so no label can
//! become markup and no script is needed.

/// A rectangle, with its tooltip (`<title>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub fill: &'static str,
    pub title: String,
}

/// A piece of text; `anchor` is SVG's `text-anchor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub x: u32,
    pub y: u32,
    pub text: String,
    pub anchor: &'static str,
}

/// A chart: its size, what is drawn, and its legend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub rects: Vec<Rect>,
    pub labels: Vec<Label>,
    /// Each series' colour and name.
    pub legend: Vec<(&'static str, &'static str)>,
    /// What the chart shows, for screen readers.
    pub title: String,
}

/// A series of a stacked chart: its colour and name.
pub type Series = (&'static str, &'static str);

/// The top of the axis for values up to `v`: 1, 2 or 5 times a power of
/// ten, at least 1.
pub fn nice_max(v: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let top = step.saturating_mul(m);
            if top >= v {
                return top;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// `v` of `max` as pixels of `px`, rounded; a non-zero value is at
/// least one pixel, so it is seen.
pub fn scale(v: u64, max: u64, px: u32) -> u32 {
    if max == 0 || v == 0 {
        return 0;
    }
    let p = ((v.min(max) as u128 * px as u128 + max as u128 / 2) / max as u128) as u32;
    p.max(1)
}

const PLOT_H: u32 = 160;
const TOP: u32 = 10;
const LEFT: u32 = 44;
const BOTTOM: u32 = 34;
const GRAY: &str = "#999";

/// Stacked columns, one per bucket (its label and each series' value).
pub fn stacked(title: &str, series: &[Series], buckets: &[(String, Vec<u64>)], width: u32) -> Chart {
    let n = buckets.len().max(1) as u32;
    let slot = (width.saturating_sub(LEFT + 10) / n).max(2);
    let bar_w = (slot * 4 / 5).max(1);
    let max = nice_max(buckets.iter().map(|(_, v)| v.iter().sum::<u64>()).max().unwrap_or(0));
    let base = TOP + PLOT_H;
    let mut c = Chart {
        width: LEFT + slot * n + 10,
        height: base + BOTTOM,
        legend: series.to_vec(),
        title: title.to_string(),
        ..Chart::default()
    };
    axis(&mut c, max, base);
    // At most about a dozen bucket labels, evenly spread.
    let every = (n as usize).div_ceil(12).max(1);
    for (i, (label, values)) in buckets.iter().enumerate() {
        let x = LEFT + slot * i as u32 + (slot - bar_w) / 2;
        let mut y = base;
        for ((fill, name), &v) in series.iter().zip(values) {
            let h = scale(v, max, PLOT_H);
            if h == 0 {
                continue;
            }
            y -= h.min(y - TOP);
            c.rects.push(Rect { x, y, w: bar_w, h, fill, title: format!("{label}: {v} {name}") });
        }
        if i % every == 0 {
            let text = label.clone();
            c.labels.push(Label { x: x + bar_w / 2, y: base + 14, text, anchor: "middle" });
        }
    }
    c
}

/// The value axis: its line and the top and middle values.
fn axis(c: &mut Chart, max: u64, base: u32) {
    c.rects.push(Rect { x: LEFT - 2, y: TOP, w: 1, h: PLOT_H, fill: GRAY, title: String::new() });
    c.rects.push(Rect { x: LEFT - 2, y: base, w: c.width - LEFT, h: 1, fill: GRAY, title: String::new() });
    // The middle only where it is a whole number (not for 1 or 5).
    let middle = max.is_multiple_of(2).then_some((max / 2, TOP + PLOT_H / 2));
    for (v, y) in [Some((max, TOP)), middle, Some((0, base))].into_iter().flatten() {
        c.labels.push(Label { x: LEFT - 6, y: y + 4, text: v.to_string(), anchor: "end" });
    }
}

const ROW_H: u32 = 22;
const NAME_W: u32 = 150;

/// Horizontal bars, one per row (its name, value and colour).
pub fn bars(title: &str, rows: &[(String, u64, &'static str)], width: u32) -> Chart {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0);
    let plot = width.saturating_sub(NAME_W + 60).max(10);
    let mut c = Chart {
        width,
        height: (rows.len() as u32 * ROW_H).max(ROW_H) + 4,
        title: title.to_string(),
        ..Chart::default()
    };
    for (i, (name, v, fill)) in rows.iter().enumerate() {
        let y = 2 + i as u32 * ROW_H;
        let w = scale(*v, max, plot);
        c.labels.push(Label { x: NAME_W - 6, y: y + 15, text: name.clone(), anchor: "end" });
        if w > 0 {
            c.rects.push(Rect { x: NAME_W, y: y + 3, w, h: ROW_H - 6, fill, title: format!("{name}: {v}") });
        }
        c.labels.push(Label { x: NAME_W + w + 6, y: y + 15, text: v.to_string(), anchor: "start" });
    }
    c
}

/// The starts of every bucket of `width` ms that meets [`from`, `to`)
/// (the record's buckets begin at multiples of the width).
pub fn buckets(from: i64, to: i64, width: i64) -> Vec<i64> {
    if width <= 0 || to <= from {
        return Vec::new();
    }
    let first = from.div_euclid(width) * width;
    (0..).map(|i| first + i * width).take_while(|s| *s < to).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_top_is_a_round_number_at_or_above_the_largest_value() {
        let cases = [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (499, 500), (501, 1000)];
        for (v, top) in cases {
            assert_eq!(nice_max(v), top, "{v}");
        }
        assert!(nice_max(u64::MAX) >= u64::MAX / 10);
    }

    #[test]
    fn values_scale_to_pixels_and_a_small_one_stays_visible() {
        assert_eq!(scale(0, 10, 160), 0);
        assert_eq!(scale(5, 0, 160), 0);
        assert_eq!(scale(10, 10, 160), 160);
        assert_eq!(scale(5, 10, 160), 80);
        assert_eq!(scale(1, 1000, 160), 1);
        assert_eq!(scale(20, 10, 160), 160, "never beyond the plot");
    }

    #[test]
    fn stacked_columns_sit_on_the_base_and_reach_their_total() {
        let series = [("#0a0", "delivered"), ("#a00", "bounced")];
        let buckets = vec![("a".to_string(), vec![3, 2]), ("b".to_string(), vec![0, 0])];
        let c = stacked("volume", &series, &buckets, 300);
        let bars: Vec<&Rect> = c.rects.iter().filter(|r| !r.title.is_empty()).collect();
        assert_eq!(bars.len(), 2, "an empty bucket draws nothing");
        let (d, b) = (bars[0], bars[1]);
        assert_eq!(d.y + d.h, TOP + PLOT_H, "the first series on the base");
        assert_eq!(b.y + b.h, d.y, "the next on top of it");
        assert_eq!(d.h + b.h, scale(5, nice_max(5), PLOT_H));
        assert_eq!(d.title, "a: 3 delivered");
        let axis: Vec<&str> =
            c.labels.iter().filter(|l| l.anchor == "end").map(|l| l.text.as_str()).collect();
        assert_eq!(axis, ["5", "0"], "the axis top and base; no middle of 2.5");
        let even = stacked("volume", &series, &[("a".to_string(), vec![20, 0])], 300);
        let axis: Vec<&str> =
            even.labels.iter().filter(|l| l.anchor == "end").map(|l| l.text.as_str()).collect();
        assert_eq!(axis, ["20", "10", "0"]);
    }

    #[test]
    fn horizontal_bars_are_as_long_as_their_share_of_the_largest() {
        let c = bars("reasons", &[("userunknown".into(), 4, "#a00"), ("mailboxfull".into(), 1, "#a00")], 400);
        assert_eq!(c.rects.len(), 2);
        assert_eq!(c.rects[0].w, 400 - NAME_W - 60);
        assert_eq!(c.rects[1].w, (400 - NAME_W - 60 + 2) / 4);
        assert!(c.labels.iter().any(|l| l.text == "userunknown"));
    }

    #[test]
    fn buckets_cover_the_window_from_an_aligned_start() {
        assert_eq!(buckets(90, 310, 100), vec![0, 100, 200, 300]);
        assert_eq!(buckets(100, 300, 100), vec![100, 200]);
        assert!(buckets(5, 5, 100).is_empty());
        assert!(buckets(0, 5, 0).is_empty());
    }
}
