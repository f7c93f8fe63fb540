//! The dashboard's daily chart as inline SVG, drawn on the server (no script): a bar per day
//! for paid orders and a point per day (joined by a line) for revenue in one currency. It is
//! an image with a `<title>` and `<desc>`; each bar and point has a `<title>` with its
//! numbers, and the page repeats them in a table.

use std::fmt::Write;

/// One day of the chart.
pub struct ChartDay {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub paid: i64,
    /// Revenue in the charted currency, minor units.
    pub revenue: i64,
    /// The revenue as shown (`¥12.30`).
    pub revenue_text: String,
}

/// The words of the chart, in the page's language.
pub struct ChartText<'a> {
    pub title: &'a str,
    pub desc: &'a str,
    pub paid: &'a str,
    pub revenue: &'a str,
}

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 36.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The SVG text (a fragment for inline use).
pub fn daily(days: &[ChartDay], text: &ChartText<'_>) -> String {
    let n = days.len().max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / n;
    let bar_w = (slot * 0.6).max(1.0);
    let max_paid = days.iter().map(|d| d.paid).max().unwrap_or(0).max(1) as f64;
    let max_rev = days.iter().map(|d| d.revenue).max().unwrap_or(0).max(1) as f64;
    let base = TOP + plot_h;

    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {W} {H}\" \
         role=\"img\" aria-labelledby=\"chart-title chart-desc\" data-testid=\"daily-chart\">\
         <title id=\"chart-title\">{}</title><desc id=\"chart-desc\">{}</desc>",
        escape(text.title),
        escape(text.desc)
    );
    // axes: the baseline and the left axis with the highest paid count
    let _ = write!(
        s,
        "<g class=\"axis\"><line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text></g>",
        W - RIGHT,
        LEFT - 4.0,
        TOP + 8.0,
        max_paid as i64,
        LEFT - 4.0,
    );
    s.push_str("<g class=\"bars\">");
    for (i, d) in days.iter().enumerate() {
        let h = (d.paid as f64 / max_paid) * plot_h;
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\">\
             <title>{}: {} {}</title></rect>",
            base - h,
            escape(&d.date),
            escape(text.paid),
            d.paid
        );
    }
    s.push_str("</g>");
    let point = |i: usize, d: &ChartDay| {
        let x = LEFT + slot * i as f64 + slot / 2.0;
        let y = base - (d.revenue as f64 / max_rev) * plot_h;
        (x, y)
    };
    let line: Vec<String> = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (x, y) = point(i, d);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        s,
        "<polyline class=\"line\" fill=\"none\" points=\"{}\"/><g class=\"points\">",
        line.join(" ")
    );
    for (i, d) in days.iter().enumerate() {
        let (x, y) = point(i, d);
        let _ = write!(
            s,
            "<circle class=\"point\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\">\
             <title>{}: {} {}</title></circle>",
            escape(&d.date),
            escape(text.revenue),
            escape(&d.revenue_text)
        );
    }
    s.push_str("</g>");
    // date labels: first and last day (and the middle one on longer ranges)
    let mut labels = vec![0, days.len().saturating_sub(1)];
    if days.len() > 2 {
        labels.insert(1, days.len() / 2);
    }
    labels.dedup();
    s.push_str("<g class=\"labels\">");
    for i in labels {
        if let Some(d) = days.get(i) {
            let (x, _) = point(i, d);
            let _ = write!(
                s,
                "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                H - 8.0,
                escape(d.date.get(5..).unwrap_or(&d.date))
            );
        }
    }
    s.push_str("</g></svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_and_point_per_day_and_escaped_text() {
        let days: Vec<ChartDay> = (1..=7)
            .map(|i| ChartDay {
                date: format!("2025-03-0{i}"),
                paid: i,
                revenue: i * 100,
                revenue_text: format!("¥{i}.00"),
            })
            .collect();
        let svg = daily(
            &days,
            &ChartText {
                title: "Paid <orders>",
                desc: "d & e",
                paid: "paid",
                revenue: "revenue",
            },
        );
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 7);
        assert_eq!(svg.matches("<circle class=\"point\"").count(), 7);
        assert!(svg.contains("<title id=\"chart-title\">Paid &lt;orders&gt;</title>"));
        assert!(svg.contains("d &amp; e"));
        assert!(svg.contains("2025-03-07: revenue ¥7.00"));
    }

    #[test]
    fn empty_days_draw_flat() {
        let days = vec![ChartDay {
            date: "2025-03-01".into(),
            paid: 0,
            revenue: 0,
            revenue_text: "0".into(),
        }];
        let svg = daily(
            &days,
            &ChartText {
                title: "t",
                desc: "d",
                paid: "p",
                revenue: "r",
            },
        );
        assert!(svg.contains("height=\"0.0\""));
        assert!(!svg.contains("NaN"));
    }
}
