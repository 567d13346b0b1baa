// Package render writes a command's result in the machine formats certctl's commands offer,
// one way for all: JSON indented by two spaces, and YAML made from that JSON (the same field
// names and time format: the JSON is the contract, the YAML its other spelling).
package render

import (
	"encoding/json"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// Machine writes v to w when format is "json" or "yaml" and reports whether it did: any
// other format is the caller's own (a table, text).
func Machine(w io.Writer, format string, v any) (bool, error) {
	switch format {
	case "json":
		return true, JSON(w, v)
	case "yaml":
		return true, YAML(w, v)
	}
	return false, nil
}

// JSON writes v as indented JSON, one document ending in a newline.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	return nil
}

// YAML writes v as YAML with the field names of its JSON.
func YAML(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("convert JSON to YAML: %w", err)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("encode YAML: %w", err)
	}
	return enc.Close()
}
