package config

import (
	"errors"
	"strings"
)

// splitCommand splits a hook command line into words the way a POSIX shell
// does, without any expansion: blanks (space, tab, newline) separate words;
// a backslash outside quotes takes the next character literally
// (backslash-newline is removed); '...' is literal; in "..." a backslash
// escapes only $ ` " \ and newline. Adjacent parts join into one word
// ("a"'b' is ab; empty quotes alone are an empty word). It returns an error
// for an unterminated quote or a trailing backslash. meta is the first
// character that a shell would treat as syntax (| & ; < > ( ) outside
// quotes, $ ` outside single quotes, # starting a word), 0 if none: without
// a shell it is passed on literally as part of a word.
func splitCommand(s string) (words []string, meta byte, err error) {
	var (
		w      strings.Builder
		inWord bool
	)
	end := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\n':
			end()
		case '\\':
			if i+1 == len(s) {
				return nil, 0, errors.New("ends with a backslash")
			}
			i++
			if s[i] != '\n' {
				w.WriteByte(s[i])
				inWord = true
			}
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, 0, errors.New("unterminated single quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			inWord = true
			i += 1 + j
		case '"':
			inWord = true
			for i++; ; i++ {
				if i == len(s) {
					return nil, 0, errors.New("unterminated double quote")
				}
				c := s[i]
				if c == '"' {
					break
				}
				if c == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0 {
					i++
					if s[i] != '\n' {
						w.WriteByte(s[i])
					}
					continue
				}
				if (c == '$' || c == '`') && meta == 0 {
					meta = c
				}
				w.WriteByte(c)
			}
		default:
			if meta == 0 && (strings.IndexByte("|&;<>()$`", c) >= 0 || c == '#' && !inWord) {
				meta = c
			}
			w.WriteByte(c)
			inWord = true
		}
	}
	end()
	return words, meta, nil
}
