package tray

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"
)

// StatusWindowTitle is the title of the status window.
const StatusWindowTitle = "Tollgate status"

// statusWindow stands in for the tray icon when no tray host is there: the
// icon, the status line and the menu's entries as buttons. Closing it
// quits the tray, as the menu's Quit does. Fyne's goroutine only.
type statusWindow struct {
	t       *App
	w       fyne.Window
	icon    *canvas.Image
	line    *widget.Label
	tip     *widget.Label
	pending *widget.Button
	mode    *widget.RadioGroup
	syncing bool // the radio group is being set from the state
}

func newStatusWindow(t *App) *statusWindow {
	sw := &statusWindow{t: t, w: t.fa.NewWindow(StatusWindowTitle)}
	sw.icon = canvas.NewImageFromResource(nil)
	sw.icon.FillMode = canvas.ImageFillContain
	sw.icon.SetMinSize(fyne.NewSquareSize(48))
	sw.line = widget.NewLabel("")
	sw.line.TextStyle.Bold = true
	sw.tip = widget.NewLabel("")
	sw.tip.Wrapping = fyne.TextWrapWord
	sw.pending = widget.NewButton("", t.prompt.Show)
	labels := make([]string, 0, len(Modes))
	byLabel := map[string]string{}
	for _, it := range (State{}).ModeItems() {
		labels = append(labels, it.Label)
		byLabel[it.Label] = it.Mode
	}
	sw.mode = widget.NewRadioGroup(labels, func(label string) {
		if sw.syncing || label == "" {
			return
		}
		t.SetMode(byLabel[label])
		// Show the daemon's mode until it reports the new one.
		sw.update(t.State(), sw.icon.Resource)
	})
	sw.mode.Horizontal = true
	buttons := container.NewHBox(sw.pending,
		widget.NewButton("Rules…", t.ShowRules),
		widget.NewButton("Connections…", t.ShowConnections),
		widget.NewButton("Quit", t.Quit))
	sw.w.SetContent(container.NewVBox(
		container.NewBorder(nil, nil, sw.icon, nil, container.NewVBox(sw.line, sw.tip)),
		widget.NewSeparator(),
		container.NewHBox(widget.NewLabel("Mode:"), sw.mode),
		buttons,
	))
	sw.w.Resize(fyne.NewSize(520, 0))
	sw.w.SetCloseIntercept(t.Quit)
	return sw
}

func (sw *statusWindow) update(s State, icon fyne.Resource) {
	if icon != nil && sw.icon.Resource != icon {
		sw.icon.Resource = icon
		sw.icon.Refresh()
	}
	sw.line.SetText(s.StatusLine())
	sw.tip.SetText(s.Explanation()) // the status line is above it
	sw.pending.SetText(s.PendingLabel())
	if s.PendingEnabled() {
		sw.pending.Enable()
	} else {
		sw.pending.Disable()
	}
	sw.syncing = true
	selected := ""
	for _, it := range s.ModeItems() {
		if it.Checked {
			selected = it.Label
		}
	}
	sw.mode.SetSelected(selected)
	if s.Reachable {
		sw.mode.Enable()
	} else {
		sw.mode.Disable()
	}
	sw.syncing = false
}

func (sw *statusWindow) showError(msg string) {
	d := dialog.NewInformation("Mode not changed", msg, sw.w)
	d.Show()
}
