//! Aligned text tables for people (scripts use `--json`).

/// Columns separated by two spaces, each as wide as its widest cell; the last column is not
/// padded, so lines carry no trailing blanks.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    std::iter::once(&headers).chain(rows).map(|row| line(row, &widths)).collect()
}

fn line(cells: &[String], widths: &[usize]) -> String {
    let last = cells.len().saturating_sub(1);
    let mut text = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i == last {
            text.push_str(cell);
        } else {
            let padding = width - cell.chars().count();
            text.push_str(&format!("{cell}{}  ", " ".repeat(padding)));
        }
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_their_headers() {
        let rows = vec![
            vec!["3f2a0c1e".to_owned(), "75.0G".to_owned(), "mounted ✔".to_owned()],
            vec!["a1".to_owned(), "64.0M".to_owned(), "pending".to_owned()],
        ];
        let table = render(&["DATASET", "SIZE", "STATUS"], &rows);
        assert_eq!(
            table,
            "DATASET   SIZE   STATUS\n3f2a0c1e  75.0G  mounted ✔\na1        64.0M  pending\n"
        );
    }

    #[test]
    fn no_rows_is_just_the_headers() {
        assert_eq!(render(&["A", "B"], &[]), "A  B\n");
    }
}
