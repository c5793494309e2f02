//! Browser form uploads (presigned POST) sent by hand: the `multipart/form-data` body a
//! `<form enctype="multipart/form-data">` sends, posted to the presigned URL.

use std::collections::BTreeMap;

use serde_json::Value;

/// A `multipart/form-data` body: the fields in order, then `file` last (S3 ignores fields
/// after the file). Returns the content type (with boundary) and the body.
pub fn form(fields: &BTreeMap<String, String>, filename: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("----presignd{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Posts the form to the presigned URL: (status, S3 error code or "").
pub async fn upload(
    http: &reqwest::Client,
    issued: &Value,
    fields: &BTreeMap<String, String>,
    filename: &str,
    data: &[u8],
) -> (u16, String) {
    let (content_type, body) = form(fields, filename, data);
    let resp = http
        .post(issued["url"].as_str().expect("url"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST to radosgw");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let code = text
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_string())
        .unwrap_or_default();
    (status, code)
}

pub fn fields_of(issued: &Value) -> BTreeMap<String, String> {
    issued["fields"]
        .as_object()
        .expect("fields")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string field").to_string()))
        .collect()
}
