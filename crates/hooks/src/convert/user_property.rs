//! MQTT User-Property pairs as EMQX 4.3 and 5.0–5.8 print them inside `props`, and back.
//!
//! e5.9+ (v3) send User-Property as `user_props` pairs, in packet order, and leave them out of
//! `props`. EMQX 5.0–5.8 (v2) and 4.3 (v1) had no `user_props`: their `properties/1` turned the
//! whole property map into `props`, `'User-Property'` included, its value (a list of
//! `{Key, Value}` binary tuples, as `emqx_frame` parses them, in packet order) printed as one
//! Erlang term. `properties/1` and `stringfy/1` read as below in 4.3 (emqx/emqx
//! `apps/emqx_exhook/src/emqx_exhook_handler.erl`, seen in the fork ertanden/emqx@51819804),
//! and `stringfy/1` is unchanged in e5.9+ (emqx/emqx master, same path); the 5.0–5.8 file
//! itself was not at hand, so that it sits between the two is an inference, which
//! `proto/contract/contract.md` §4.1 (one Erlang-term string in `props`) agrees with:
//!
//! ```erlang
//! properties(undefined) -> [];
//! properties(M) when is_map(M) ->
//!     maps:fold(fun(K, V, Acc) ->
//!         [#{name => stringfy(K),
//!            value => stringfy(V)} | Acc]
//!     end, [], M).
//!
//! stringfy(Term) when is_binary(Term) -> Term;
//! stringfy(Term) when is_integer(Term) -> integer_to_binary(Term);
//! stringfy(Term) when is_atom(Term) -> atom_to_binary(Term, utf8);
//! stringfy(Term) -> unicode:characters_to_binary((io_lib:format("~0p", [Term]))).
//! ```
//!
//! e5.9's replacement (`format_props/1`) takes `'User-Property'` out of the map first:
//!
//! ```erlang
//! format_props(M) when is_map(M) ->
//!     case maps:take('User-Property', M) of
//!         error -> {[], props(M)};
//!         {UserProps, SystemProps} -> {user_props(UserProps), props(SystemProps)}
//!     end.
//! user_props(UserProps) when is_list(UserProps) ->
//!     lists:map(fun({K, V}) -> #{name => stringfy(K), value => stringfy(V)} end, UserProps).
//! ```
//!
//! So the v1/v2 entry is `name = "User-Property"`, `value = ~0p` of `[{<<K>>,<<V>>}, ...]`.
//! `~0p` is `~p` with line length 0 (one line) and without the `t` modifier, so binaries are
//! printed as **latin-1**: a binary all of whose bytes are printable latin-1 (`io_lib`'s
//! `printable_latin1_list`: 32–126, 160–255, `\b \t \n \v \f \r \e`) is printed as
//! `<<"...">>`, one character per byte (`"` and `\` and those control characters escaped), and
//! `unicode:characters_to_binary` then encodes those characters as UTF-8; any other binary is
//! printed as its bytes, `<<226,130,172>>`; the empty binary as `<<>>`. A UTF-8 `é` (C3 A9,
//! both printable latin-1) therefore arrives as `<<"Ã©">>`, and `€` (E2 82 AC: 0x82 is not
//! printable) as `<<226,130,172>>`. That is OTP's `io_lib_pretty:printable_bin/4` (latin-1
//! branch; with `~p`'s unlimited depth the whole binary is checked) and
//! `io_lib:write_latin1_string/2` (OTP `lib/stdlib/src/io_lib_pretty.erl`, `io_lib.erl`).
//! Checked byte for byte against `stringfy/1` run on OTP 25.2 (`erl`, Debian bookworm) for the
//! strings in the tests below and 3,000 random pair lists (quotes, backslashes, control
//! characters, latin-1, CJK, emoji): e.g. `[{<<"k1">>,<<"v1">>},{<<"q\"uote">>,<<"back\\slash">>}]`,
//! `[{<<"Ã©">>,<<"Ã¼">>}]`, `[{<<226,130,172>>,<<"x">>}]`, `[{<<"esc\e">>,<<"tab\t">>}]`,
//! `[{<<>>,<<>>}]`, `[]`. EMQX 5.x releases were built on OTP 24–26; 24 and 26 were not run.
//!
//! [`format_user_property`] prints exactly that. [`parse_user_property`] reads it back, and
//! also the other spellings of the same term an Erlang reader accepts and a different `~p`
//! could produce (spaces and line breaks between tokens, `<<"..."/utf8>>`, every Erlang string
//! escape), so a v1/v2 provider is given the same Erlang term whatever the caller's spelling.

use exhook_proto::model::Property;

/// The `props` entry name of the pairs in v1/v2: `stringfy('User-Property')`.
pub const USER_PROPERTY: &str = "User-Property";

/// Why a `User-Property` string is not a list of UTF-8 string pairs as EMQX prints it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseUserPropertyError {
    /// Not the Erlang term `[{Binary, Binary}, ...]`.
    #[error("not an Erlang list of binary pairs: expected {expected} at byte {at}")]
    Syntax {
        /// Byte offset in the string.
        at: usize,
        /// What the reader expected there.
        expected: &'static str,
    },
    /// A key or value is a binary that is not UTF-8 (a protobuf `string` cannot carry it).
    #[error("pair {pair}: key or value is not UTF-8 text")]
    NotUtf8 {
        /// Index of the pair, from 0.
        pair: usize,
    },
}

/// Prints `pairs` as EMQX 4.3/5.0–5.8 print a `'User-Property'` value: `~0p` of
/// `[{<<Name>>,<<Value>>}, ...]`, made UTF-8 by `unicode:characters_to_binary`.
pub fn format_user_property(pairs: &[Property]) -> String {
    let mut out = String::with_capacity(2 + pairs.iter().map(|p| p.name.len() + p.value.len() + 14).sum::<usize>());
    out.push('[');
    for (i, p) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        push_binary(&mut out, p.name.as_bytes());
        out.push(',');
        push_binary(&mut out, p.value.as_bytes());
        out.push('}');
    }
    out.push(']');
    out
}

/// `io_lib:printable_latin1_list/1`'s characters (OTP `io_lib.erl`).
fn printable_latin1(b: u8) -> bool {
    matches!(b, 8..=13 | 27 | 32..=126 | 160..=255)
}

/// One binary as `io_lib_pretty` prints it with latin-1 encoding.
fn push_binary(out: &mut String, bytes: &[u8]) {
    if !bytes.is_empty() && bytes.iter().all(|&b| printable_latin1(b)) {
        out.push_str("<<\"");
        for &b in bytes {
            // `io_lib:write_latin1_string/2`'s escapes; any other byte here is printable and
            // written as the latin-1 character, which characters_to_binary makes UTF-8.
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                0x0B => out.push_str("\\v"),
                0x08 => out.push_str("\\b"),
                0x0C => out.push_str("\\f"),
                0x1B => out.push_str("\\e"),
                _ => out.push(char::from(b)),
            }
        }
        out.push_str("\">>");
    } else {
        out.push_str("<<");
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_decimal(out, *b);
        }
        out.push_str(">>");
    }
}

fn push_decimal(out: &mut String, b: u8) {
    if b >= 100 {
        out.push(char::from(b'0' + b / 100));
    }
    if b >= 10 {
        out.push(char::from(b'0' + b / 10 % 10));
    }
    out.push(char::from(b'0' + b % 10));
}

/// Reads a `'User-Property'` value printed by EMQX 4.3/5.0–5.8 back into pairs, in order
/// (duplicate names kept, as MQTT allows). Linear in the input, no recursion, never panics.
pub fn parse_user_property(text: &str) -> Result<Vec<Property>, ParseUserPropertyError> {
    let mut r = Reader { s: text, at: 0 };
    let mut pairs = Vec::new();
    r.ws();
    r.expect('[', "'['")?;
    r.ws();
    if !r.eat(']') {
        loop {
            r.expect('{', "'{'")?;
            r.ws();
            let name = r.binary()?;
            r.ws();
            r.expect(',', "','")?;
            r.ws();
            let value = r.binary()?;
            r.ws();
            r.expect('}', "'}'")?;
            let pair = pairs.len();
            let text = |b: Vec<u8>| String::from_utf8(b).map_err(|_| ParseUserPropertyError::NotUtf8 { pair });
            pairs.push(Property { name: text(name)?, value: text(value)? });
            r.ws();
            if r.eat(']') {
                break;
            }
            r.expect(',', "',' or ']'")?;
            r.ws();
        }
    }
    r.ws();
    if r.peek().is_some() {
        return Err(r.error("the end"));
    }
    Ok(pairs)
}

struct Reader<'a> {
    s: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.at..).and_then(|rest| rest.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.at += c.len_utf8();
        }
        hit
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let hit = self.s.get(self.at..).is_some_and(|rest| rest.starts_with(s));
        if hit {
            self.at += s.len();
        }
        hit
    }

    fn error(&self, expected: &'static str) -> ParseUserPropertyError {
        ParseUserPropertyError::Syntax { at: self.at, expected }
    }

    fn expect(&mut self, c: char, expected: &'static str) -> Result<(), ParseUserPropertyError> {
        if self.eat(c) { Ok(()) } else { Err(self.error(expected)) }
    }

    /// Erlang's whitespace between tokens (`erl_scan`: control characters and space).
    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c <= ' ') {
            self.at += 1;
        }
    }

    /// `<<>>`, `<<"...">>`, `<<"..."/utf8>>` or `<<N,N,...>>` (N in 0..=255): the bytes.
    fn binary(&mut self) -> Result<Vec<u8>, ParseUserPropertyError> {
        if !self.eat_str("<<") {
            return Err(self.error("'<<'"));
        }
        self.ws();
        let mut bytes = Vec::new();
        if self.eat_str(">>") {
            return Ok(bytes);
        }
        if self.eat('"') {
            let mut chars = Vec::new();
            while !self.eat('"') {
                chars.push(self.string_char()?);
            }
            self.ws();
            let utf8 = self.eat('/');
            if utf8 {
                self.ws();
                if !self.eat_str("utf8") {
                    return Err(self.error("'utf8'"));
                }
                self.ws();
            }
            for c in chars {
                if utf8 {
                    let c = char::from_u32(c).ok_or_else(|| self.error("a Unicode character"))?;
                    bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                } else {
                    // A latin-1 segment: one byte per character (~p prints no others).
                    bytes.push(u8::try_from(c).map_err(|_| self.error("a latin-1 character"))?);
                }
            }
        } else {
            loop {
                bytes.push(self.byte()?);
                self.ws();
                if !self.eat(',') {
                    break;
                }
                self.ws();
            }
        }
        if !self.eat_str(">>") {
            return Err(self.error("'>>'"));
        }
        Ok(bytes)
    }

    /// A decimal integer 0..=255.
    fn byte(&mut self) -> Result<u8, ParseUserPropertyError> {
        let start = self.at;
        let mut n: u32 = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            self.at += 1;
            // Bounded at once: a long run of digits cannot overflow.
            n = n * 10 + d;
            if n > 255 {
                return Err(ParseUserPropertyError::Syntax { at: start, expected: "a byte 0..255" });
            }
        }
        if self.at == start {
            return Err(self.error("a byte or '\"'"));
        }
        u8::try_from(n).map_err(|_| ParseUserPropertyError::Syntax { at: start, expected: "a byte 0..255" })
    }

    /// One character of a string literal, escapes resolved (Erlang reference manual, "Escape
    /// Sequences"): `\b \d \e \f \n \r \s \t \v`, `\OOO` (1–3 octal digits), `\xHH`,
    /// `\x{H...}`, `\^C` (control character), `\` before any other character is that character.
    fn string_char(&mut self) -> Result<u32, ParseUserPropertyError> {
        let c = self.bump().ok_or_else(|| self.error("'\"'"))?;
        if c != '\\' {
            return Ok(u32::from(c));
        }
        let e = self.bump().ok_or_else(|| self.error("an escape"))?;
        Ok(match e {
            'b' => 8,
            'd' => 127,
            'e' => 27,
            'f' => 12,
            'n' => 10,
            'r' => 13,
            's' => 32,
            't' => 9,
            'v' => 11,
            '0'..='7' => {
                let mut n = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            self.at += 1;
                            n = n * 8 + d;
                        }
                        None => break,
                    }
                }
                n
            }
            'x' if self.eat('{') => {
                let mut n: u32 = 0;
                let mut digits = 0;
                while let Some(d) = self.peek().and_then(|c| c.to_digit(16)) {
                    self.at += 1;
                    digits += 1;
                    n = n
                        .checked_mul(16)
                        .and_then(|n| n.checked_add(d))
                        .ok_or_else(|| self.error("a character code"))?;
                }
                if digits == 0 || !self.eat('}') {
                    return Err(self.error("'\\x{HEX}'"));
                }
                n
            }
            'x' => {
                let mut n = 0;
                for _ in 0..2 {
                    let d = self.peek().and_then(|c| c.to_digit(16)).ok_or_else(|| self.error("two hex digits"))?;
                    self.at += 1;
                    n = n * 16 + d;
                }
                n
            }
            '^' => {
                let c = self.bump().ok_or_else(|| self.error("a control character"))?;
                u32::from(c) & 31
            }
            other => u32::from(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<Property> {
        list.iter().map(|(n, v)| Property { name: (*n).into(), value: (*v).into() }).collect()
    }

    /// Byte for byte what `emqx_exhook_handler:stringfy/1` returns for these pairs on OTP 25.2
    /// (checked with `erl`, comparing hex dumps).
    const EMQX: &[(&str, &[(&str, &str)])] = &[
        ("[]", &[]),
        ("[{<<\"k1\">>,<<\"v1\">>}]", &[("k1", "v1")]),
        ("[{<<\"a\">>,<<\"1\">>},{<<\"b\">>,<<\"2\">>},{<<\"a\">>,<<\"3\">>}]", &[("a", "1"), ("b", "2"), ("a", "3")]),
        ("[{<<\"q\\\"uote\">>,<<\"back\\\\slash\">>}]", &[("q\"uote", "back\\slash")]),
        ("[{<<\"comma,\">>,<<\"[br]{x},<<y>>\">>}]", &[("comma,", "[br]{x},<<y>>")]),
        ("[{<<>>,<<>>}]", &[("", "")]),
        ("[{<<\"Ã©\">>,<<\"Ã¼\">>}]", &[("é", "ü")]),
        ("[{<<226,130,172>>,<<\"x\">>}]", &[("€", "x")]),
        ("[{<<230,151,165,230,156,172>>,<<240,159,152,128>>}]", &[("日本", "😀")]),
        ("[{<<\"tab\\there\">>,<<\"nl\\nx\">>}]", &[("tab\there", "nl\nx")]),
        ("[{<<99,116,108,1,127>>,<<\"del\">>}]", &[("ctl\u{1}\u{7f}", "del")]),
        ("[{<<98,101,108,108,7>>,<<\"esc\\e\">>}]", &[("bell\u{7}", "esc\u{1b}")]),
        ("[{<<\"cr\\r\">>,<<\"vt\\v ff\\f bs\\b\">>}]", &[("cr\r", "vt\u{b} ff\u{c} bs\u{8}")]),
        ("[{<<\"hash#$%^&*()'\">>,<<\"~p ~s\">>}]", &[("hash#$%^&*()'", "~p ~s")]),
        ("[{<<0>>,<<\"nul\">>}]", &[("\0", "nul")]),
        // È is C3 88, and 0x88 is not printable latin-1.
        ("[{<<\"x\">>,<<97,195,136>>}]", &[("x", "aÈ")]),
        ("[{<<\"Â\u{a0}\">>,<<194,159>>}]", &[("\u{a0}", "\u{9f}")]),
    ];

    #[test]
    fn emqx_strings_parse_and_format_back_exactly() {
        for (text, expected) in EMQX {
            let expected = pairs(expected);
            assert_eq!(parse_user_property(text).as_ref(), Ok(&expected), "{text}");
            assert_eq!(format_user_property(&expected), *text);
        }
    }

    #[test]
    fn other_spellings_of_the_same_term() {
        let k = pairs(&[("é", "€"), ("a", "b")]);
        for text in [
            // `~0tp` with `+pc unicode`, had EMQX used it.
            "[{<<\"é\"/utf8>>,<<\"€\"/utf8>>},{<<\"a\">>,<<\"b\">>}]",
            // `~p` with a line length: breaks and indentation between tokens.
            " [ { <<\"Ã©\">> , << 226 , 130 , 172 >> } ,\n  {<<\"a\"/ utf8 >>,<<98>>}]\n",
            // Escapes an Erlang reader accepts.
            "[{<<\"\\x{e9}\"/utf8>>,<<\"\\342\\202\\254\">>},{<<\"\\x61\">>,<<\"\\142\">>}]",
        ] {
            assert_eq!(parse_user_property(text).as_ref(), Ok(&k), "{text}");
        }
        assert_eq!(parse_user_property("[{<<\"\\^a\\s\\d\">>,<<>>}]"), Ok(pairs(&[("\u{1} \u{7f}", "")])));
    }

    #[test]
    fn not_the_term() {
        for text in [
            "",
            "[",
            "[{<<\"a\">>,<<\"b\">>}",
            "[{<<\"a\">>,<<\"b\">>}]x",
            "[{<<\"a\">>}]",
            "[{<<\"a\">>,<<\"b\">>,<<\"c\">>}]",
            "[{\"a\",\"b\"}]",
            "[{<<\"a>>,<<\"b\">>}]",
            "[{<<256>>,<<>>}]",
            "[{<<1,>>,<<>>}]",
            "[{<<\"€\">>,<<>>}]",
            "[{<<\"\\x{110000}\"/utf8>>,<<>>}]",
            "[{<<\"\\x{fffffffff}\"/utf8>>,<<>>}]",
            "[{<<\"a\"/utf16>>,<<>>}]",
            "[{<<\"a\\",
            "#{<<\"a\">> => <<\"b\">>}",
            "[{<<\"k\">>,<<\"v\">>},]",
        ] {
            assert!(matches!(parse_user_property(text), Err(ParseUserPropertyError::Syntax { .. })), "{text:?}");
        }
        assert_eq!(
            parse_user_property("[{<<\"k\">>,<<\"v\">>},{<<255>>,<<>>}]"),
            Err(ParseUserPropertyError::NotUtf8 { pair: 1 })
        );
        assert_eq!(parse_user_property("[{<<\"ÿ\">>,<<>>}]"), Err(ParseUserPropertyError::NotUtf8 { pair: 0 }));
    }
}
