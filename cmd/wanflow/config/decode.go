package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxNodes bounds the nodes visited while decoding, aliases expanded, so that
// a small file cannot make the decoder do unbounded work ("billion laughs").
const maxNodes = 100000

// decoder walks a yaml.Node tree into Go values, strictly: every key must
// name a field, every value must have the field's kind. It records the line
// of every path it visits, so that checks made after decoding can point at
// the offending value.
type decoder struct {
	probs []Problem
	lines map[string]int // "uplinks[1].weight" -> line of the value
	nodes int
}

// defaulter is implemented by element types that have defaults; the decoder
// calls setDefaults on every element it creates before decoding into it.
type defaulter interface{ setDefaults() }

// liner is implemented by types that remember the line they were defined on.
type liner interface{ setLine(int) }

// scalarSetter is implemented by mapping types that also accept a scalar
// shorthand (on_failure: reset); setScalar returns a *valueError.
type scalarSetter interface{ setScalar(*yaml.Node) error }

// replaced names keys of earlier versions and what replaced them.
var replaced = map[string]string{
	"on_down_every": "replaced by while_down (the command) and retry (its period)",
}

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (d *decoder) problem(line int, path, format string, args ...any) {
	d.probs = append(d.probs, Problem{Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// isNull reports whether n is an explicit null ("key:", "key: ~").
func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.problem(n.Line, path, "document too large (more than %d values after expanding aliases)", maxNodes)
		}
		return
	}
	line := n.Line
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.lines[path] = line

	// Sections (mappings, lists, optional blocks) given as null are absent.
	if isNull(n) {
		switch v.Kind() {
		case reflect.Struct, reflect.Slice, reflect.Pointer:
			if !v.Addr().Type().Implements(unmarshalerType) {
				return
			}
		}
	}

	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			nv := reflect.New(v.Type().Elem())
			if df, ok := nv.Interface().(defaulter); ok {
				df.setDefaults()
			}
			v.Set(nv)
		}
		d.decode(n, v.Elem(), path)
		return
	}

	if v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			var ve *valueError
			if errors.As(err, &ve) {
				d.problem(ve.line, path, "%s", ve.msg)
			} else {
				d.problem(line, path, "%v", err)
			}
		}
		return
	}
	if v.Addr().Type().Implements(textUnmarshalerType) {
		s, err := scalar(n, "a string")
		if err == nil {
			err = v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
		}
		if err != nil {
			var ve *valueError
			if errors.As(err, &ve) {
				d.problem(ve.line, path, "%s", ve.msg)
			} else {
				// policy.Affinity's errors start with "policy: "; the
				// path already says where.
				d.problem(line, path, "%s", strings.TrimPrefix(err.Error(), "policy: "))
			}
		}
		return
	}

	switch v.Kind() {
	case reflect.Struct:
		if ss, ok := v.Addr().Interface().(scalarSetter); ok && n.Kind == yaml.ScalarNode {
			if err := ss.setScalar(n); err != nil {
				d.problem(line, path, "%s", err.(*valueError).msg)
			}
			return
		}
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.problem(line, path, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			e := s.Index(i)
			if df, ok := e.Addr().Interface().(defaulter); ok {
				df.setDefaults()
			}
			d.decode(item, e, path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.String:
		s, err := scalar(n, "a string")
		if err != nil {
			d.problem(line, path, "%s", err.(*valueError).msg)
			return
		}
		v.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var x int64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&x) != nil || v.OverflowInt(x) {
			d.problem(line, path, "want an integer, got %s", describe(n))
			return
		}
		v.SetInt(x)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var x int64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&x) != nil || x < 0 || v.OverflowUint(uint64(x)) {
			d.problem(line, path, "want a non-negative integer, got %s", describe(n))
			return
		}
		v.SetUint(uint64(x))
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.problem(line, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	default:
		// Programmer error: a Config field of a kind this decoder lacks.
		panic(fmt.Sprintf("config: cannot decode into %s at %s", v.Type(), path))
	}
}

// yamlFields maps the yaml keys of struct type t to field indexes, in
// declaration order.
func yamlFields(t reflect.Type) (keys []string, index map[string]int) {
	index = make(map[string]int)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		keys = append(keys, name)
		index[name] = i
	}
	return keys, index
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.problem(n.Line, path, "want a mapping, got %s", describe(n))
		return
	}
	keys, index := yamlFields(v.Type())
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.problem(k.Line, path, "keys must be names, got %s", describe(k))
			continue
		}
		kp := join(path, k.Value)
		if k.Value == "<<" {
			d.problem(k.Line, path, "merge keys (<<) are not supported")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.problem(k.Line, kp, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		fi, ok := index[k.Value]
		if !ok {
			if why, ok := replaced[k.Value]; ok {
				d.problem(k.Line, kp, "unknown key (%s)", why)
				continue
			}
			d.problem(k.Line, kp, "unknown key (want one of: %s)", strings.Join(keys, ", "))
			continue
		}
		d.decode(val, v.Field(fi), kp)
		// A setting is found at its key: a block list or mapping value
		// starts on the line after it.
		d.lines[kp] = k.Line
	}
	if l, ok := v.Addr().Interface().(liner); ok {
		l.setLine(n.Line)
	}
}
