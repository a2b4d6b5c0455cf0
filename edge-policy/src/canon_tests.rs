use proptest::prelude::*;

use super::*;

fn canon(p: &str) -> String {
    canonical_path(p).canonical.into_owned()
}

#[test]
fn spellings_of_one_path_have_one_form() {
    for (raw, want) in [
        ("/admin", "/admin"),
        ("//admin", "/admin"),
        ("/admin//users", "/admin/users"),
        ("/./admin", "/admin"),
        ("/x/../admin", "/admin"),
        ("/../../admin", "/admin"),
        ("/x/y/../../admin/", "/admin/"),
        ("/admin/.", "/admin/"),
        ("/%61dmin", "/admin"),
        ("/%41dmin", "/Admin"),
        ("/adm%69n", "/admin"),
        ("/%2e/admin", "/admin"),
        ("/x/%2e%2e/admin", "/admin"),
        ("/x/%2E%2E/admin", "/admin"),
        ("\\admin", "/admin"),
        ("/x\\..\\admin", "/admin"),
        ("/admin;jsessionid=1/users", "/admin/users"),
        ("/x/..;/admin", "/admin"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),
        ("/a%21b", "/a!b"),
        ("/a%2fb", "/a%2Fb"),
        ("/a%5cb", "/a%5Cb"),
        ("/a%3fb", "/a%3Fb"),
        ("/100%", "/100%25"),
        ("/a%zzb", "/a%25zzb"),
        ("/a b", "/a%20b"),
        ("", "/"),
        ("admin", "/admin"),
    ] {
        assert_eq!(canon(raw), want, "{raw:?}");
    }
}

#[test]
fn ambiguous_spellings_have_every_reading() {
    let r = canonical_path("/public/..%2Fadmin");
    assert!(r.ambiguous);
    assert_eq!(r.canonical, "/public/..%2Fadmin");
    assert!(r.others.iter().any(|o| o == "/admin"), "{r:?}");

    let r = canonical_path("/x/%2e%2e/admin");
    assert!(r.ambiguous);
    assert!(r.others.iter().any(|o| o == "/x/%2E%2E/admin"), "{r:?}");

    let r = canonical_path("/x/%252e%252e/admin");
    assert!(r.ambiguous);
    assert_eq!(r.canonical, "/x/%252e%252e/admin");
    assert!(r.others.iter().any(|o| o == "/admin"), "{r:?}");

    let r = canonical_path("/x%252F..%252Fadmin");
    assert!(r.ambiguous);
    assert!(r.others.iter().any(|o| o == "/admin"), "{r:?}");

    let r = canonical_path("/admin%00.png");
    assert!(r.ambiguous);
    assert_eq!(r.canonical, "/admin%00.png");
    assert!(r.others.iter().any(|o| o == "/admin"), "{r:?}");

    let r = canonical_path("/admin;x");
    assert!(!r.ambiguous, "parameters are ordinary");
    assert_eq!(r.canonical, "/admin");
    assert_eq!(r.others, vec!["/admin;x".to_string()]);

    for plain in ["/a%2Eb", "/%61dmin", "/a/b", "//a"] {
        assert!(!canonical_path(plain).ambiguous, "{plain}");
    }
    for odd in ["/a%zz", "/a%0a", "/a\u{1}b", "/a%7f"] {
        assert!(canonical_path(odd).ambiguous, "{odd:?}");
    }
}

#[test]
fn query_values_are_decoded_and_repeated() {
    let v: Vec<_> = query_values("pid=a&x=1&pid=%62&p%69d=c;pid=d+e", "pid").collect();
    assert_eq!(v, ["a", "b", "c", "d e"]);
    assert_eq!(query_values("", "pid").count(), 0);
    assert_eq!(query_values("pid", "pid").collect::<Vec<_>>(), [""]);
}

/// Segments with the characters that make obfuscation interesting left out.
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_~-]{1,8}".prop_filter("not a dot segment", |s| s != "." && s != "..")
}

/// `seg` spelled another way: some unreserved characters percent-encoded, in either case.
fn obfuscate_segment(seg: &str, picks: &[bool], upper: bool) -> String {
    seg.chars()
        .zip(picks.iter().cycle())
        .map(|(c, &enc)| {
            if enc {
                let e = format!("%{:02x}", c as u32);
                if upper {
                    e.to_uppercase()
                } else {
                    e
                }
            } else {
                c.to_string()
            }
        })
        .collect()
}

proptest! {
    /// A path under a prefix, obfuscated by dot segments, repeated slashes, encoded
    /// unreserved characters and hex case, still has the prefix's canonical form in front.
    #[test]
    fn obfuscated_paths_stay_under_their_prefix(
        prefix in prop::collection::vec(segment(), 1..4),
        rest in prop::collection::vec(segment(), 0..4),
        junk in prop::collection::vec(segment(), 0..3),
        picks in prop::collection::vec(any::<bool>(), 1..9),
        slashes in 1usize..4,
        dots in 0usize..3,
        upper in any::<bool>(),
    ) {
        let clean = format!("/{}", prefix.join("/"));
        let mut raw = String::new();
        for (i, seg) in prefix.iter().chain(rest.iter()).enumerate() {
            raw.push_str(&"/".repeat(slashes));
            for _ in 0..dots {
                raw.push_str("./");
            }
            if i == 0 {
                for j in &junk {
                    raw.push_str(&format!("{j}/../"));
                }
            }
            raw.push_str(&obfuscate_segment(seg, &picks, upper));
        }
        let r = canonical_path(&raw);
        prop_assert!(!r.ambiguous, "{raw}");
        prop_assert!(crate::model::path_has_prefix(&r.canonical, &clean), "{raw} -> {}", r.canonical);
    }

    /// The canonical form is canonical: reading it again changes nothing, and it has no
    /// empty, `.` or `..` segment.
    #[test]
    fn the_canonical_form_is_idempotent(raw in "[/a-z.%2eEfF5cC;\\\\0-9]{0,24}") {
        let c = canon(&raw);
        prop_assert_eq!(canon(&c), c.clone(), "{}", raw);
        prop_assert!(c.starts_with('/'));
        prop_assert!(!c.contains("//") && !c.contains("/./") && !c.contains("/../"), "{} -> {}", raw, c);
        prop_assert!(!c.ends_with("/.") && !c.ends_with("/.."), "{} -> {}", raw, c);
        for o in canonical_path(&raw).others {
            prop_assert!(!o.contains("//") && !o.contains("/../"), "{} -> {}", raw, o);
        }
    }
}
