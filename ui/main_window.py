"""The main window: navigation by role, sign-in, About."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from inspector import __version__
from inspector.errors import InspectorError
from inspector.history.pins import MIN_PIN_LENGTH
from demo import ATTRIBUTION
from ui.session import OPERATOR, Session

PAGE_TITLES = {"operator": "Operator", "teach": "Teach", "review": "Review", "settings": "Settings"}


class SignInDialog(QDialog):
    """Name and PIN; the session checks them against the database.

    On a new database (no technician yet) it creates the first technician instead -- name, PIN
    twice -- and signs them in: setting up a line must not need a terminal. The database
    audits that and refuses it once a technician exists. The hint above the fields does not
    wrap, so the dialog is always wide enough to show it whole.
    """

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.first_start = session.needs_first_technician()
        self.setWindowTitle("Create the first technician" if self.first_start else "Sign in")
        self.name_edit = QLineEdit()
        self.pin_edit = QLineEdit()
        self.pin_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.repeat_edit = QLineEdit()
        self.repeat_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #c62828")
        self.error_label.setWordWrap(True)
        self.hint_label = QLabel(FIRST_START_HINT if self.first_start else SIGN_IN_HINT)
        self.hint_label.setTextFormat(Qt.TextFormat.RichText)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        if self.first_start:
            buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create and sign in")
            self.pin_edit.setPlaceholderText(f"at least {MIN_PIN_LENGTH} characters")  # the database's rule
        buttons.accepted.connect(self._on_ok_clicked)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint_label)
        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("PIN", self.pin_edit)
        if self.first_start:
            form.addRow("PIN again", self.repeat_edit)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)

    def _on_ok_clicked(self) -> None:
        name, pin = self.name_edit.text().strip(), self.pin_edit.text()
        try:
            if self.first_start:
                if pin != self.repeat_edit.text():
                    raise InspectorError("the two PINs differ")
                self.session.create_first_technician(name, pin)
            else:
                self.session.sign_in(name, pin)
        except InspectorError as exc:
            self.error_label.setText(str(exc))
            self.pin_edit.clear()
            self.repeat_edit.clear()
            return
        self.accept()


SIGN_IN_HINT = "Technicians and quality engineers sign in here."
FIRST_START_HINT = (
    "<b>First start:</b> this database has no technician yet.<br>"
    "Create the first one here; they set up the line and add everyone else<br>"
    "(<tt>inspector users add</tt>). Offered once, and recorded in the audit trail."
)


def about_text() -> str:
    return (
        f"<h3>inspector {__version__}</h3><p>Inline visual inspection with EfficientAD.</p>"
        f"<p><b>Demo data</b><br>{ATTRIBUTION}</p>"
    )


class MainWindow(QMainWindow):
    """Pages are created by the application and handed in; which are shown depends on the role."""

    def __init__(self, session: Session, pages: dict[str, QWidget], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.pages = pages
        self.setWindowTitle("inspector")
        self.nav = QListWidget()
        self.nav.setFixedWidth(130)
        self.nav.setStyleSheet("QListWidget { font-size: 14pt; } QListWidget::item { padding: 10px; }")
        self.stack = QStackedWidget()
        for page in pages.values():
            self.stack.addWidget(page)
        self.user_label = QLabel()
        self.sign_in_button = QPushButton("Sign in …")
        self.sign_in_button.clicked.connect(self._on_sign_in_clicked)
        self.about_button = QPushButton("About")
        self.about_button.clicked.connect(self.show_about)

        top = QHBoxLayout()
        top.addWidget(self.user_label, 1)
        top.addWidget(self.sign_in_button)
        top.addWidget(self.about_button)
        body = QHBoxLayout()
        body.addWidget(self.nav)
        body.addWidget(self.stack, 1)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(top)
        layout.addLayout(body, 1)
        self.setCentralWidget(central)
        self._names: list[str] = []
        self._current = "operator"
        self.nav.currentRowChanged.connect(self._on_nav_changed)
        session.user_changed.connect(self._on_user_changed)
        self._on_user_changed(session.user, session.role)

    def show_page(self, name: str) -> None:
        """Shows a page the signed-in role may see (others are not in the navigation)."""
        if name not in self._names:
            raise InspectorError(f"the {PAGE_TITLES[name]} page is not open to the {self.session.role} role")
        self.nav.setCurrentRow(self._names.index(name))

    def current_page(self) -> str:
        return self._current

    def _on_nav_changed(self, row: int) -> None:
        if 0 <= row < len(self._names):
            self._current = self._names[row]
            self.stack.setCurrentWidget(self.pages[self._current])

    def _on_user_changed(self, user: str, role: str) -> None:
        # Stay on the page shown if the new role may see it, else go to the operator page.
        self._names = list(self.session.pages())
        self.nav.blockSignals(True)
        self.nav.clear()
        for name in self._names:
            self.nav.addItem(PAGE_TITLES[name])
        self.nav.blockSignals(False)
        self.user_label.setText(f"<b>{user}</b> ({role})")
        self.sign_in_button.setText(self._sign_in_text() if role == OPERATOR else "Sign out")
        self.nav.setCurrentRow(self._names.index(self._current) if self._current in self._names else 0)
        self._on_nav_changed(self.nav.currentRow())

    def _sign_in_text(self) -> str:
        # A new database: the button offers what the dialog will do.
        return "Create first technician …" if self.session.needs_first_technician() else "Sign in …"

    def _on_sign_in_clicked(self) -> None:
        if self.session.role != OPERATOR:
            self.session.sign_out()
            return
        SignInDialog(self.session, self).exec()

    def show_about(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("About inspector")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(about_text())
        box.exec()
