//! The pages built into the binary: landing page, README as HTML, the test client, the
//! OpenAPI document and its viewer. They work from any working directory; `/readme` can be
//! replaced by the operator's own Markdown (`WRS_README_PATH`).

use actix_web::{web, HttpResponse};

use super::AppState;
use crate::config::Readme;

const INDEX: &str = include_str!("../../assets/index.html");
const CLIENT: &str = include_str!("../../assets/client.html");
const DOCS: &str = include_str!("../../assets/docs.html");
const OPENAPI: &str = include_str!("../../assets/openapi.json");
const README: &str = include_str!("../../README.md");

fn html(body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

pub async fn index() -> HttpResponse {
    html(INDEX)
}

pub async fn client() -> HttpResponse {
    html(CLIENT)
}

pub async fn docs() -> HttpResponse {
    html(DOCS)
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

/// The README page, rendered once at start from `WRS_README_PATH` or the built-in README.
pub fn render_readme(readme: Option<&Readme>) -> String {
    let (markdown, title) = match readme {
        Some(r) => (r.markdown.as_str(), "README"),
        None => (README, "wrs README"),
    };
    let mut body = String::new();
    let parser = pulldown_cmark::Parser::new_ext(markdown, pulldown_cmark::Options::all());
    pulldown_cmark::html::push_html(&mut body, parser);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;\
         padding:0 1rem;line-height:1.5}}pre{{background:#f4f4f4;padding:.75rem;\
         overflow:auto}}code{{background:#f4f4f4}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.25rem .5rem}}</style></head><body>{body}\
         </body></html>"
    )
}

pub async fn readme(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(state.readme_html.clone())
}
