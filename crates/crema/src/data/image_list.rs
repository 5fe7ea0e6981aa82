//! Image lists: the text files `ImageData`'s `source` and `convert-imageset` read, one `path label` a line.
//!
//! As in Caffe, the label is what follows the last space of a line, so a path may hold spaces
//! (`my photos/cat 1.jpg 3` is the image `my photos/cat 1.jpg` with label 3). crema is stricter than Caffe's
//! `atoi` and friendlier with whitespace: the label must be a whole number (an error names the file and line
//! otherwise), a tab separates like a space, whitespace around the path and the label is dropped (Windows line
//! ends included), and blank lines are skipped. Paths are kept as written; the reader joins them to its
//! `root_folder` (Caffe prepends it as text).

use std::path::Path;

use super::pixels::invalid;
use crate::error::Result;

/// The `(path, label)` pairs of the image list at `path`, in the file's order. Errors name the file and line:
/// a line without a label, a label that is not a whole number, or a list that names no image.
///
/// ```no_run
/// let lines = crema::data::image_list::read_list("train.txt".as_ref())?;
/// for (image, label) in &lines {
///     println!("{image}: {label}");
/// }
/// # Ok::<(), crema::Error>(())
/// ```
pub fn read_list(path: &Path) -> Result<Vec<(String, i32)>> {
    let text = crema_proto::files::read_text_file(path, "image list")?;
    parse_list(&text).map_err(|reason| invalid(path, reason))
}

/// The `(path, label)` pairs of an image list's text; errors say which line.
pub fn parse_list(text: &str) -> std::result::Result<Vec<(String, i32)>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(at) = line.rfind([' ', '\t']) else {
            return Err(format!(
                "line {}: \"{line}\" has no label; each line is `path label`",
                number + 1
            ));
        };
        let (image, label) = (line[..at].trim(), line[at + 1..].trim());
        let label: i32 = label.parse().map_err(|_| {
            format!(
                "line {}: the label \"{label}\" (after the last space) is not a whole number",
                number + 1
            )
        })?;
        lines.push((image.to_owned(), label));
    }
    if lines.is_empty() {
        return Err("the list names no image".into());
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_follows_the_last_space() {
        let text = "a.jpg 0\r\nmy photos/cat 1.jpg 3\n\n  b.png\t-2  \n\u{3b1}.png 7";
        assert_eq!(
            parse_list(text).unwrap(),
            [
                ("a.jpg".to_owned(), 0),
                ("my photos/cat 1.jpg".into(), 3),
                ("b.png".into(), -2),
                ("\u{3b1}.png".into(), 7)
            ]
        );
        assert_eq!(parse_list("\u{feff}x 1").unwrap(), [("x".to_owned(), 1)]);
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let err = parse_list("a.jpg 0\nb.jpg\n").unwrap_err();
        assert!(err.starts_with("line 2: \"b.jpg\" has no label"), "{err}");
        let err = parse_list("a.jpg 0\n\nb.jpg 1.5\n").unwrap_err();
        assert!(err.starts_with("line 3: the label \"1.5\""), "{err}");
        let err = parse_list("a.jpg 99999999999").unwrap_err();
        assert!(err.starts_with("line 1: "), "{err}");
        assert!(parse_list("\n  \n").unwrap_err().contains("names no image"));
    }

    #[test]
    fn files_are_named_in_errors() {
        let dir = std::env::temp_dir().join(format!("crema-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("list.txt");
        std::fs::write(&path, "x.png 1\ny.png z\n").unwrap();
        let err = read_list(&path).unwrap_err().to_string();
        assert!(err.contains("list.txt: line 2: "), "{err}");
        let err = read_list(&dir.join("missing.txt")).unwrap_err().to_string();
        assert!(err.contains("missing.txt"), "{err}");
        std::fs::write(&path, "x.png 1\n").unwrap();
        assert_eq!(read_list(&path).unwrap(), [("x.png".to_owned(), 1)]);
    }
}
