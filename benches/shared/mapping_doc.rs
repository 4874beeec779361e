//! The generated Mappings the benches use: groups of 1 to 3 backends, mixed weights, a few hosts
//! and header canaries.

/// The `i`-th generated Mapping, as one YAML document.
pub fn mapping_doc(i: usize) -> String {
    let group = i / 3 + usize::from(i.is_multiple_of(7));
    let host = if group.is_multiple_of(5) {
        format!("host: h{}.example.com\n", group % 7)
    } else {
        String::new()
    };
    let header = if group.is_multiple_of(11) {
        "headers:\n  x-canary: \"true\"\n"
    } else {
        ""
    };
    let weight = match i % 3 {
        0 => String::new(),
        1 => format!("weight: {}\n", 1 + i % 30),
        _ => format!("weight: {}.{}\n", i % 20, i % 10),
    };
    format!(
        "apiVersion: ambassador/v1\nkind: Mapping\nname: m{i}\nprefix: /svc{group}/\nservice: s{i}.ns:8080\n{host}{header}{weight}"
    )
}

/// Writes Mappings `0..n` over files of 10 (`f00000.yaml`, ...), as the benches serve them.
pub fn write_mapping_files(dir: &std::path::Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut docs = Vec::new();
    let mut file = 0;
    for i in 0..n {
        docs.push(mapping_doc(i));
        if docs.len() == 10 || i + 1 == n {
            std::fs::write(dir.join(format!("f{file:05}.yaml")), docs.join("---\n")).unwrap();
            docs.clear();
            file += 1;
        }
    }
}
