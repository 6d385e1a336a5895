package hooks

import (
	"fmt"
	"strings"
)

// SyntaxError reports a command line that Split rejects.
type SyntaxError struct {
	// Offset is the byte offset in the line where the problem was found.
	Offset int
	// Msg says what is wrong.
	Msg string
}

// Error implements error.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s at byte %d", e.Msg, e.Offset)
}

// shellSpecial are the characters that, unquoted, make a POSIX shell do
// something other than split words: operators, command separators,
// redirections, subshells, expansions and pathname patterns.
const shellSpecial = ";&|<>()$`*?[\n"

// reserved are the POSIX shell reserved words (XCU 2.4), which mean
// something else than a command name in first position.
var reserved = map[string]bool{
	"!": true, "{": true, "}": true, "case": true, "do": true, "done": true,
	"elif": true, "else": true, "esac": true, "fi": true, "for": true,
	"if": true, "in": true, "then": true, "until": true, "while": true,
}

// Split splits a command line into argv the way a POSIX shell (XCU 2.2,
// 2.3) splits and quote-removes words, without any expansion:
//
//   - words are separated by unquoted spaces and tabs;
//   - a backslash outside quotes keeps the next character literally, and a
//     backslash-newline is removed;
//   - 'single quotes' keep everything literally;
//   - "double quotes" keep everything literally except that a backslash
//     escapes $ ` " \ and newline (and is kept before any other character).
//
// Everything a shell would expand or interpret is rejected rather than
// passed on literally, so that a line accepted by Split means exactly what
// it would mean to /bin/sh: unquoted ; & | < > ( ) $ ` * ? [ and newline,
// # or ~ at the start of a word, $ or ` inside double quotes, a variable
// assignment (NAME=value) or a reserved word (if, while, !, …) as the first
// word, and NUL bytes. Quote such characters to pass them literally, or use
// Spec.Shell. Errors are *SyntaxError.
func Split(line string) ([]string, error) {
	var (
		words    []string
		cur      strings.Builder
		inWord   bool // a word has started (possibly an empty quoted one)
		quoted   bool // some part of the current word was quoted or escaped
		nameOnly bool // the current word so far is an unquoted shell name (for NAME=)
	)
	bad := func(i int, format string, args ...any) ([]string, error) {
		return nil, &SyntaxError{Offset: i, Msg: fmt.Sprintf(format, args...)}
	}
	start := func() {
		if !inWord {
			inWord, quoted, nameOnly = true, false, true
			cur.Reset()
		}
	}
	finish := func(i int) error {
		if !inWord {
			return nil
		}
		w := cur.String()
		if len(words) == 0 && !quoted && reserved[w] {
			return &SyntaxError{Offset: i, Msg: fmt.Sprintf("reserved word %q as command", w)}
		}
		words = append(words, w)
		inWord = false
		return nil
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == 0:
			return bad(i, "NUL byte")
		case c == ' ' || c == '\t':
			if err := finish(i); err != nil {
				return nil, err
			}
		case c == '\\':
			if i+1 == len(line) {
				return bad(i, "backslash at end of line")
			}
			i++
			if line[i] == '\n' {
				continue // line continuation: removed, does not start a word
			}
			if line[i] == 0 {
				return bad(i, "NUL byte")
			}
			start()
			quoted, nameOnly = true, false
			cur.WriteByte(line[i])
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return bad(i, "unterminated single quote")
			}
			s := line[i+1 : i+1+j]
			if k := strings.IndexByte(s, 0); k >= 0 {
				return bad(i+1+k, "NUL byte")
			}
			start()
			quoted, nameOnly = true, false
			cur.WriteString(s)
			i += j + 1
		case c == '"':
			start()
			quoted, nameOnly = true, false
			open := i
			closed := false
			for i++; i < len(line); i++ {
				d := line[i]
				if d == '"' {
					closed = true
					break
				}
				switch d {
				case 0:
					return bad(i, "NUL byte")
				case '$', '`':
					return bad(i, "%q inside double quotes would be expanded by a shell; escape it with a backslash, use single quotes or set Shell", d)
				case '\\':
					if i+1 == len(line) {
						return bad(open, "unterminated double quote")
					}
					switch e := line[i+1]; e {
					case '$', '`', '"', '\\':
						cur.WriteByte(e)
						i++
					case '\n':
						i++
					default:
						cur.WriteByte('\\')
					}
				default:
					cur.WriteByte(d)
				}
			}
			if !closed {
				return bad(open, "unterminated double quote")
			}
		case strings.IndexByte(shellSpecial, c) >= 0:
			return bad(i, "unquoted %q is special to a shell; quote it or set Shell", c)
		case (c == '#' || c == '~') && !inWord:
			return bad(i, "unquoted %q at the start of a word is special to a shell; quote it or set Shell", c)
		case c == '=' && inWord && nameOnly && len(words) == 0:
			return bad(i, "variable assignment as command; use env NAME=value command, or set Shell")
		default:
			start()
			if nameOnly && !isNameByte(c, cur.Len() == 0) {
				nameOnly = false
			}
			cur.WriteByte(c)
		}
	}
	if err := finish(len(line)); err != nil {
		return nil, err
	}
	return words, nil
}

// isNameByte reports whether c may appear in a shell variable name (XBD 3.235)
// at the first position (first) or later.
func isNameByte(c byte, first bool) bool {
	switch {
	case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		return true
	case '0' <= c && c <= '9':
		return !first
	}
	return false
}
