//! Splitting admin command text into tokens: words (case-insensitive), quoted identifiers
//! (case kept), string literals, numbers and `;`.

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// An unquoted word, lowercased.
    Word(String),
    /// A "quoted identifier", case kept.
    Quoted(String),
    /// A 'string literal'.
    Literal(String),
    /// `=` (as in `SET x = y`).
    Equals,
    /// `;` between statements.
    Semicolon,
}

/// Tokenizes `text`; an unterminated quote is an error naming what is missing.
pub(crate) fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            ';' => {
                chars.next();
                out.push(Token::Semicolon);
            }
            '=' => {
                chars.next();
                out.push(Token::Equals);
            }
            '"' | '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => {
                            // A doubled quote is an escaped quote.
                            if chars.peek() == Some(&c) {
                                chars.next();
                                value.push(c);
                            } else {
                                break;
                            }
                        }
                        Some(other) => value.push(other),
                        None => {
                            return Err(format!(
                                "unterminated {} quote",
                                if c == '"' { "double" } else { "single" }
                            ))
                        }
                    }
                }
                out.push(if c == '"' {
                    Token::Quoted(value)
                } else {
                    Token::Literal(value)
                });
            }
            '-' if chars.clone().nth(1) == Some('-') => {
                // Comment to end of line.
                for next in chars.by_ref() {
                    if next == '\n' {
                        break;
                    }
                }
            }
            _ => {
                let mut word = String::new();
                while let Some(&w) = chars.peek() {
                    if w.is_whitespace() || matches!(w, ';' | '=' | '"' | '\'') {
                        break;
                    }
                    word.push(w);
                    chars.next();
                }
                out.push(Token::Word(word.to_lowercase()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_and_separators() {
        assert_eq!(
            tokens("SHOW Pools; pause \"MyDb\" -- comment\nSET x = 'it''s'").unwrap(),
            vec![
                Token::Word("show".into()),
                Token::Word("pools".into()),
                Token::Semicolon,
                Token::Word("pause".into()),
                Token::Quoted("MyDb".into()),
                Token::Word("set".into()),
                Token::Word("x".into()),
                Token::Equals,
                Token::Literal("it's".into()),
            ]
        );
        assert!(tokens("pause \"oops").is_err());
        assert_eq!(
            tokens("pause \"données\" -- é").unwrap(),
            vec![Token::Word("pause".into()), Token::Quoted("données".into())]
        );
    }
}
