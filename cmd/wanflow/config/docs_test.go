package config

import (
	"encoding"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// configDoc is the configuration reference, relative to this package.
var configDoc = filepath.Join("..", "..", "..", "docs", "configuration.md")

// yamlKeyPaths returns the key path of every setting of struct type t, in
// declaration order, the way docs/configuration.md writes them: dotted
// keys, "[]" after a list of mappings ("uplinks[].probes.interval").
// Sections (mappings, lists of mappings) are listed as well as their keys.
func yamlKeyPaths(t reflect.Type, prefix string) []string {
	var paths []string
	keys, index := yamlFields(t)
	for _, k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		paths = append(paths, path)
		ft := t.Field(index[k]).Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case isLeaf(ft):
		case ft.Kind() == reflect.Struct:
			paths = append(paths, yamlKeyPaths(ft, path)...)
		case ft.Kind() == reflect.Slice:
			et := ft.Elem()
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if !isLeaf(et) && et.Kind() == reflect.Struct {
				paths = append(paths, yamlKeyPaths(et, path+"[]")...)
			}
		}
	}
	return paths
}

// isLeaf reports whether values of t are written as one scalar: types with
// their own YAML or text unmarshaler (durations, addresses, ranges,
// affinity) and plain kinds.
func isLeaf(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	if pt.Implements(reflect.TypeFor[yaml.Unmarshaler]()) || pt.Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		return true
	}
	return t.Kind() != reflect.Struct && t.Kind() != reflect.Slice
}

func readConfigDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatalf("read the configuration reference: %v", err)
	}
	return string(b)
}

// TestDocsListEveryKey fails when a configuration key is missing from
// docs/configuration.md, so that the reference cannot fall behind the
// Config structs. Each key must appear in backquotes, e.g.
// `uplinks[].weight`.
func TestDocsListEveryKey(t *testing.T) {
	doc := readConfigDoc(t)
	paths := yamlKeyPaths(reflect.TypeFor[Config](), "")
	if len(paths) < 40 {
		t.Fatalf("found only %d key paths in Config; the reflection walk is broken: %v", len(paths), paths)
	}
	for _, p := range paths {
		if !strings.Contains(doc, "`"+p+"`") {
			t.Errorf("%s does not document `%s`", configDoc, p)
		}
	}
}

var yamlBlock = regexp.MustCompile("(?ms)^```yaml(?: wanflow-config[^\n]*)?\n(.*?)^```")

// TestDocsExamplesParse checks that every ```yaml block of
// docs/configuration.md is a configuration that Parse accepts without
// warnings.
func TestDocsExamplesParse(t *testing.T) {
	doc := readConfigDoc(t)
	blocks := yamlBlock.FindAllStringSubmatchIndex(doc, -1)
	if len(blocks) < 2 {
		t.Fatalf("%s has %d yaml blocks, want at least 2 (the full example and the Raspberry Pi)", configDoc, len(blocks))
	}
	for _, m := range blocks {
		line := strings.Count(doc[:m[2]], "\n") + 1
		src := doc[m[2]:m[3]]
		name := configDoc + ":" + itoa(line)
		t.Run("line"+itoa(line), func(t *testing.T) {
			c, err := Parse([]byte(src), name)
			if err != nil {
				t.Fatalf("Parse of the yaml block at %s:\n%v", name, err)
			}
			for _, w := range c.Warnings {
				t.Errorf("warning: %s", w)
			}
		})
	}
}
