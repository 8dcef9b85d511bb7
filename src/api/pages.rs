//! The pages built into the binary: landing page, README as HTML, the test client, the
//! OpenAPI document and its viewer. They work from any working directory.

use std::sync::OnceLock;

use actix_web::HttpResponse;

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

/// README.md rendered once, on first request.
pub async fn readme() -> HttpResponse {
    static PAGE: OnceLock<String> = OnceLock::new();
    let page = PAGE.get_or_init(|| {
        let mut body = String::new();
        let parser = pulldown_cmark::Parser::new_ext(README, pulldown_cmark::Options::all());
        pulldown_cmark::html::push_html(&mut body, parser);
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>wrs README</title>\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <style>body{{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;\
             padding:0 1rem;line-height:1.5}}pre{{background:#f4f4f4;padding:.75rem;\
             overflow:auto}}code{{background:#f4f4f4}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:.25rem .5rem}}</style></head><body>{body}\
             </body></html>"
        )
    });
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.as_str())
}
