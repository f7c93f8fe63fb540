//! Seller-written Markdown (descriptions, notice, footer) to safe HTML, and QR codes as
//! inline SVG drawn by kami itself.

/// Markdown rendered, then cleaned by ammonia: no script, no event handlers, no
/// `javascript:` links, whatever the seller (or whoever stole an admin token) wrote.
pub fn markdown(text: &str) -> String {
    use pulldown_cmark::{html, Options, Parser};
    let mut out = String::with_capacity(text.len() * 3 / 2);
    html::push_html(
        &mut out,
        Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES),
    );
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&out)
        .to_string()
}

/// An SVG QR code for `text` (no XML declaration, scales with CSS); `None` if the text is
/// too long for a QR code.
pub fn qr_svg(text: &str) -> Option<String> {
    use qrcode::render::svg;
    use qrcode::{EcLevel, QrCode};
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(1, 1)
        .quiet_zone(true)
        .dark_color(svg::Color("#000"))
        .light_color(svg::Color("#fff"))
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_cannot_inject_script() {
        let evil = "# Hi\n<script>alert(1)</script>\n[x](javascript:alert(1)) <img src=x onerror=alert(1)>\n<a href=\"https://e.com\" onclick=\"x()\">ok</a>";
        let html = markdown(evil);
        assert!(html.contains("<h1>Hi</h1>"), "{html}");
        for bad in ["<script", "javascript:", "onerror", "onclick"] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        assert!(html.contains("href=\"https://e.com\""), "{html}");
    }

    #[test]
    fn qr_is_an_svg() {
        let svg = qr_svg("weixin://wxpay/bizpayurl?pr=abc").unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("viewBox") || svg.contains("width"), "{svg}");
        assert!(qr_svg(&"x".repeat(5000)).is_none());
    }
}
