package prompt

import (
	"fyne.io/fyne/v2"
	fdesktop "fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// keySelect is a Select that passes the prompt's keys on: after its menu
// closes a Select keeps the keyboard focus, and the canvas's key handlers
// only get keys nobody has the focus for. A and D (runes), Enter and
// Escape go to the prompt; the arrow keys and space still work the choice.
type keySelect struct {
	widget.Select
	onRune func(rune)
	onKey  func(*fyne.KeyEvent) bool // true: the prompt took the key
}

func newKeySelect(options []string, changed func(string), onRune func(rune), onKey func(*fyne.KeyEvent) bool) *keySelect {
	s := &keySelect{onRune: onRune, onKey: onKey}
	s.Options, s.OnChanged = options, changed
	s.ExtendBaseWidget(s)
	return s
}

// TypedRune hands runes to the prompt (a Select ignores them).
func (s *keySelect) TypedRune(r rune) { s.onRune(r) }

// TypedKey hands Enter and Escape to the prompt, the rest to the Select.
func (s *keySelect) TypedKey(ev *fyne.KeyEvent) {
	if !s.onKey(ev) {
		s.Select.TypedKey(ev)
	}
}

// hoverText shows a label whose text is shortened; the pointer coming
// over it (or a tap, for a touch screen) opens a pop-up in its place with
// the whole text, wrapped to the window's width, which closes when the
// pointer leaves it (or on a tap). The pop-up lies over the label: the
// pointer is then over the pop-up, so the label's MouseOut must not
// close it.
type hoverText struct {
	widget.BaseWidget
	label *widget.Label
	full  string
	pop   *widget.PopUp
	text  *widget.Label // the pop-up's
}

var (
	_ fyne.Tappable      = (*hoverText)(nil)
	_ fdesktop.Hoverable = (*hoverText)(nil)
)

// maxPopUpText bounds the text a pop-up shows (a command line can be
// megabytes; the window cannot show more than this anyway).
const maxPopUpText = 2000

func newHoverText(l *widget.Label, full string) *hoverText {
	if r := []rune(full); len(r) > maxPopUpText {
		full = string(r[:maxPopUpText]) + "…"
	}
	h := &hoverText{label: l, full: full}
	h.ExtendBaseWidget(h)
	return h
}

func (h *hoverText) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(h.label) }

// MouseIn shows the whole text.
func (h *hoverText) MouseIn(*fdesktop.MouseEvent) { h.show() }

// MouseMoved does nothing.
func (h *hoverText) MouseMoved(*fdesktop.MouseEvent) {}

// MouseOut does nothing: the pop-up, over the label, closes itself.
func (h *hoverText) MouseOut() {}

// Tapped shows the whole text.
func (h *hoverText) Tapped(*fyne.PointEvent) { h.show() }

// shown says the pop-up is up.
func (h *hoverText) shown() bool { return h.pop != nil && h.pop.Visible() }

func (h *hoverText) show() {
	if h.shown() {
		return
	}
	d := fyne.CurrentApp().Driver()
	c := d.CanvasForObject(h)
	if c == nil {
		return
	}
	if h.pop == nil {
		h.text = widget.NewLabel(h.full)
		h.text.Wrapping = fyne.TextWrapWord
		h.pop = widget.NewPopUp(newPopUpText(h.text, h.hide), c)
	}
	pos := d.AbsolutePositionForObject(h)
	width := max(c.Size().Width-pos.X-theme.Padding(), 100)
	// The text wraps at the pop-up's width: lay it out there to know its
	// height.
	h.text.Resize(fyne.NewSize(width, h.text.MinSize().Height))
	h.pop.ShowAtPosition(pos)
	h.pop.Resize(fyne.NewSize(width, h.text.MinSize().Height))
}

func (h *hoverText) hide() {
	if h.pop != nil {
		h.pop.Hide()
	}
}

// popUpText is the pop-up's text: leaving it or tapping it closes the
// pop-up.
type popUpText struct {
	widget.BaseWidget
	label *widget.Label
	close func()
}

func newPopUpText(l *widget.Label, close func()) *popUpText {
	p := &popUpText{label: l, close: close}
	p.ExtendBaseWidget(p)
	return p
}

func (p *popUpText) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(p.label) }

func (p *popUpText) MouseIn(*fdesktop.MouseEvent)    {}
func (p *popUpText) MouseMoved(*fdesktop.MouseEvent) {}
func (p *popUpText) MouseOut()                       { p.close() }
func (p *popUpText) Tapped(*fyne.PointEvent)         { p.close() }
