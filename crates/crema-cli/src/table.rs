//! Plain-text tables with aligned columns, for commands that print lists of layers, blobs or classes.

/// A table: a header row and data rows, printed with columns padded to their widest cell.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right_aligned: Vec<bool>,
}

impl Table {
    /// A table with these column titles; columns are left-aligned unless marked with [`Table::right`].
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        let header: Vec<String> = header.into_iter().map(Into::into).collect();
        let right_aligned = vec![false; header.len()];
        Table {
            header,
            rows: Vec::new(),
            right_aligned,
        }
    }

    /// Right-aligns column `index` (for numbers).
    pub fn right(mut self, index: usize) -> Self {
        if let Some(flag) = self.right_aligned.get_mut(index) {
            *flag = true;
        }
        self
    }

    /// Adds a row; missing cells print empty.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Renders the table, the header underlined with dashes, each line indented by `indent` spaces.
    pub fn render(&self, indent: usize) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let pad = " ".repeat(indent);
        let line = |cells: &[String]| {
            let mut out = pad.clone();
            for (i, width) in widths.iter().enumerate().take(columns) {
                let cell = cells.get(i).map_or("", String::as_str);
                let fill = " ".repeat(width - cell.chars().count());
                if i > 0 {
                    out.push_str("  ");
                }
                if self.right_aligned[i] {
                    out.push_str(&fill);
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    if i + 1 < columns {
                        out.push_str(&fill);
                    }
                }
            }
            out.trim_end().to_owned() + "\n"
        };
        let mut out = line(&self.header);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        out.push_str(&line(&rule));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// `text` followed by spaces up to `width` characters. Unlike `{:<width$}`, any width works: a name read from
/// a file can be longer than the formatter's limit of 65535.
pub fn pad_right(text: &str, width: usize) -> String {
    let fill = width.saturating_sub(text.chars().count());
    format!("{text}{}", " ".repeat(fill))
}

/// Spaces up to `width` characters, then `text` (see [`pad_right`]).
pub fn pad_left(text: &str, width: usize) -> String {
    let fill = width.saturating_sub(text.chars().count());
    format!("{}{text}", " ".repeat(fill))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_takes_widths_past_the_formatters_limit() {
        let long = "n".repeat(70_000);
        assert_eq!(pad_right(&long, 70_002).len(), 70_002);
        assert_eq!(pad_left("ab", 4), "  ab");
        assert_eq!(pad_right("abc", 1), "abc");
    }
}
