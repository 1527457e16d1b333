//! docs/api.md lists every error reason: its table and the proto enum
//! `shop.common.v1.ErrorReason` hold the same names, in the same order.

use shopmesh_platform::errors::ErrorReason;

#[test]
fn the_reason_table_in_docs_api_md_matches_the_enum() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"))
        .expect("docs/api.md");
    let table = doc
        .split_once("### Error reasons")
        .expect("docs/api.md has a section `### Error reasons`")
        .1;
    let documented: Vec<&str> = table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // header and rule
        .map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default().trim();
            first.trim_matches('`')
        })
        .collect();
    let defined: Vec<&str> = (1..1000)
        .filter_map(|n| ErrorReason::try_from(n).ok())
        .map(|reason| reason.as_str_name())
        .collect();
    assert_eq!(documented, defined);
}
