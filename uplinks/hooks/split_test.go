package hooks

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

var splitValid = []struct {
	line string
	want []string
}{
	{"", nil},
	{" \t  ", nil},
	{"wvdial 3g", []string{"wvdial", "3g"}},
	{"  a \t b  ", []string{"a", "b"}},
	{"a'b c'd", []string{"ab cd"}},
	{"''", []string{""}},
	{`a '' b ""`, []string{"a", "", "b", ""}},
	{`"a b" c`, []string{"a b", "c"}},
	{`"\$HOME \` + "`" + ` \" \\ \x"`, []string{"$HOME ` \" \\ \\x"}},
	{`a\ b`, []string{"a b"}},
	{`a\;b \| \& \> \< \( \) \$ \* \? \[ \# \~`, []string{"a;b", "|", "&", ">", "<", "(", ")", "$", "*", "?", "[", "#", "~"}},
	{"a\\\nb", []string{"ab"}},
	{"\\\n", nil},
	{"a \\\n b", []string{"a", "b"}},
	{"\"a\\\nb\"", []string{"ab"}},
	{`'a\b'`, []string{`a\b`}},
	{"'a\nb'", []string{"a\nb"}},
	{"\"a\nb\"", []string{"a\nb"}},
	{`'$(touch x)' "*?[;|&<>()" '` + "`id`" + `'`, []string{"$(touch x)", "*?[;|&<>()", "`id`"}},
	{`a#b a~b '#' '~' ""# ''~`, []string{"a#b", "a~b", "#", "~", "#", "~"}},
	{"x a=b", []string{"x", "a=b"}},
	{"=a", []string{"=a"}},
	{`"A"=b`, []string{"A=b"}},
	{`\A=b`, []string{"A=b"}},
	{`1A=b`, []string{"1A=b"}},
	{"env A=b wvdial", []string{"env", "A=b", "wvdial"}},
	{"echo if then ! { }", []string{"echo", "if", "then", "!", "{", "}"}},
	{"'if' x", []string{"if", "x"}},
	{"ifconfig", []string{"ifconfig"}},
	{"a]b {c} d! e^f %g @h +i ,j .k /l :m", []string{"a]b", "{c}", "d!", "e^f", "%g", "@h", "+i", ",j", ".k", "/l", ":m"}},
	{"héllo wörld ☎", []string{"héllo", "wörld", "☎"}},
	{"a\rb", []string{"a\rb"}},
	{`--url="http://x/?a=1&b=2"`, []string{"--url=http://x/?a=1&b=2"}},
	{`/usr/bin/wvdial --config='/etc/wv dial.conf' 3g`, []string{"/usr/bin/wvdial", "--config=/etc/wv dial.conf", "3g"}},
}

var splitInvalid = []struct {
	line   string
	offset int
}{
	{"a; b", 1},
	{"a | b", 2},
	{"a && b", 2},
	{"a > f", 2},
	{"a <f", 2},
	{"(a)", 0},
	{"echo $HOME", 5},
	{"echo `id`", 5},
	{"ls *.txt", 3},
	{"a?", 1},
	{"[a]", 0},
	{"a\nb", 1},
	{"a #c", 2},
	{"cat ~/x", 4},
	{"A=b cmd", 1},
	{"_x1=2", 3},
	{"if", 2},
	{"! x", 1},
	{"{ x", 1},
	{`echo "$x"`, 6},
	{"echo \"`id`\"", 6},
	{"echo 'abc", 5},
	{`echo "abc`, 5},
	{`echo "abc\`, 5},
	{`abc\`, 3},
	{"a\x00b", 1},
	{"'\x00'", 1},
	{"\"\x00\"", 1},
	{"\\\x00", 1},
	{"x; touch /tmp/pwned", 1},
}

func TestSplit(t *testing.T) {
	for _, tt := range splitValid {
		t.Run(tt.line, func(t *testing.T) {
			got, err := Split(tt.line)
			if err != nil {
				t.Fatalf("Split(%q) error %v, want %q", tt.line, err, tt.want)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Split(%q) = %q, want %q", tt.line, got, tt.want)
			}
		})
	}
	for _, tt := range splitInvalid {
		t.Run(tt.line, func(t *testing.T) {
			got, err := Split(tt.line)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Split(%q) = %q, %v; want a *SyntaxError", tt.line, got, err)
			}
			if se.Offset != tt.offset {
				t.Errorf("Split(%q) error %q: offset %d, want %d", tt.line, se, se.Offset, tt.offset)
			}
		})
	}
}

// TestSplitMatchesShell checks every accepted line against /bin/sh itself:
// printf '%s\0' followed by the line prints the words the shell sees.
func TestSplitMatchesShell(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	for _, tt := range splitValid {
		if len(tt.want) == 0 {
			continue // printf with no argument prints one empty word
		}
		out, err := exec.Command("/bin/sh", "-c", `printf '%s\0' `+tt.line).Output()
		if err != nil {
			t.Errorf("sh -c printf %q: %v", tt.line, err)
			continue
		}
		sh := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		if !slices.Equal(sh, tt.want) {
			t.Errorf("line %q: /bin/sh sees %q, test wants %q", tt.line, sh, tt.want)
		}
	}
}

// shQuote quotes s for a POSIX shell (and for Split).
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func FuzzSplit(f *testing.F) {
	for _, tt := range splitValid {
		f.Add(tt.line)
	}
	for _, tt := range splitInvalid {
		f.Add(tt.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		words, err := Split(line)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(line) {
				t.Fatalf("Split(%q) error %#v, want *SyntaxError with offset in [0,%d]", line, err, len(line))
			}
			if words != nil {
				t.Fatalf("Split(%q) returned words %q with error", line, words)
			}
			return
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			if strings.IndexByte(w, 0) >= 0 {
				t.Fatalf("Split(%q) word %q has a NUL byte", line, w)
			}
			quoted[i] = shQuote(w)
		}
		// Quoting every word and splitting again gives the same words.
		again, err := Split(strings.Join(quoted, " "))
		if err != nil || !slices.Equal(again, words) {
			t.Fatalf("Split(%q) = %q; re-split of quoted form = %q, %v", line, words, again, err)
		}
		// A line without any quoting or special character splits on blanks.
		if !strings.ContainsAny(line, "\\'\"=#~\x00"+shellSpecial) {
			plain := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
			if len(plain) == 0 {
				plain = nil
			}
			if !slices.Equal(words, plain) {
				t.Fatalf("Split(%q) = %q, want %q", line, words, plain)
			}
		}
	})
}
