//! Response bodies for the HTTP benchmarks.

/// The JSON body of `benches/http.sh` and the `http_body` bench: an array of small
/// objects (`{"id":7,"name":"item-7","ok":true}`) of about `size` bytes, nothing in it to
/// mask.
pub fn json_items(size: usize) -> String {
    let mut items = Vec::new();
    let mut len = 2;
    let mut i = 0;
    while len < size {
        let item = format!(r#"{{"id":{i},"name":"item-{i}","ok":true}}"#);
        len += item.len() + 1;
        items.push(item);
        i += 1;
    }
    format!("[{}]", items.join(","))
}
