//! Specs as HTML a page can show as it is. Markdown allows raw HTML and any
//! link; a spec is written by any project member (or agent), and the board
//! shows it to the others with their API key in the page's storage, so the
//! HTML is made safe here rather than trusted: raw HTML is shown as text,
//! links keep only http(s), mailto and in-page targets, and images become
//! links (the page's policy would not load them anyway).

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};

/// `markdown` rendered to HTML that runs nothing and links nowhere unsafe.
pub fn safe_html(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        })
        | Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_target(dest_url),
            title,
            id,
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

/// `target`, or `#` when it would run script or leave for another scheme.
fn safe_target(target: CowStr<'_>) -> CowStr<'_> {
    let lower = target.trim().to_ascii_lowercase();
    let scheme = lower.split_once(':').map(|(scheme, _)| scheme);
    let relative = scheme.is_none_or(|scheme| scheme.contains(['/', '?', '#']));
    if relative || matches!(scheme, Some("http" | "https" | "mailto")) {
        target
    } else {
        CowStr::Borrowed("#")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders() {
        let html = safe_html(
            "# Auth\n\n1. Passport.js\n2. `callback`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        );
        assert!(html.contains("<h1>Auth</h1>"), "{html}");
        assert!(html.contains("<li>Passport.js</li>"), "{html}");
        assert!(html.contains("<code>callback</code>"), "{html}");
        assert!(html.contains("<table>"), "{html}");
    }

    #[test]
    fn raw_html_is_text() {
        let html = safe_html("Hi <script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn links_keep_only_safe_targets() {
        for (markdown, href) in [
            ("[pr](https://example.com/pr/7)", "https://example.com/pr/7"),
            ("[mail](mailto:lead@example.com)", "mailto:lead@example.com"),
            ("[here](#step-2)", "#step-2"),
            ("[docs](docs/workflow.md)", "docs/workflow.md"),
            ("[x](javascript:alert(1))", "#"),
            ("[x]( JavaScript:alert(1))", "#"),
            ("[x](data:text/html,hi)", "#"),
            ("[x](vbscript:msgbox)", "#"),
        ] {
            let html = safe_html(markdown);
            assert!(
                html.contains(&format!("href=\"{href}\"")),
                "{markdown}: {html}"
            );
        }
        let image = safe_html("![diagram](javascript:alert(1))");
        assert!(
            !image.contains("<img") && image.contains("href=\"#\""),
            "{image}"
        );
    }
}
